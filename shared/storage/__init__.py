"""Everything the app stores, and the only code that talks to Blob Storage and the events queue.

layout.py    every blob name and prefix of the snapshot container (latest.json, snapshots and what sits beside
             them, the outbox, the run lock, withheld.json)
blobs.py     the container client and every request of it: reads, conditional writes, listings, deletes
blocks.py    the one block stager: run-unique block ids, the step named in its errors, the post-commit check
reader.py    the one bounded, verifying reader of stored documents: small JSON documents (latest.json,
             .published markers, outbox records, withheld.json) and line-oriented ones (snapshots,
             change records), gunzipped in bounded steps; gzip detection
lease.py     one run at a time: the lease on locks/run.lock, renewed while the run lasts
queue.py     the events queue's client and its sends
sas.py       short-lived read-only SAS URLs for blobs too large to answer inline
problems.py  one line about a failed Blob Storage or queue request
"""
