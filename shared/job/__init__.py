"""The nightly snapshot run (the timer's entry, run_scheduled), one composition root of the app.

run.py       run_scheduled and run_snapshot: settings, credentials, paging into the snapshot writer, in order
steps.py     the steps after the commit: comparison, change record, guard, publishing, the outbox's drain
summary.py   the snapshot.summary line and the refresh tokens the run kept
deadline.py  DeadlineWatch: the pace of paging against the run deadline, said early
"""

from shared.job.run import run_scheduled as run_scheduled
from shared.job.run import run_snapshot as run_snapshot
