"""Says early when a run cannot finish paging before its deadline, so the operator can give it more time.

Paging is sequential: a run takes about (pages x the time between two pages). The previous published
snapshot's customer count over this run's page size gives the pages to expect; the time between this run's
first two pages gives the pace. When the estimate passes SNAPSHOT_RUN_DEADLINE_SECONDS, one WARNING
`snapshot.deadline_at_risk` at the second page says so and names the settings to change. The run goes on:
the estimate can be wrong (a slow first page), and the deadline still ends the run with snapshot.failed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared import events
from shared.events import log_event

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.snapshots.store import Manifest

log = logging.getLogger("shared.job")

ADVICE = (
    "raise the function timeout (AzureFunctionsJobHost__functionTimeout, the infra parameter "
    "functionTimeout): SNAPSHOT_RUN_DEADLINE_SECONDS follows it unless it is set, then raise that too"
)


@dataclass
class DeadlineWatch:
    expected_pages: int
    deadline_seconds: float
    function_timeout_seconds: float | None
    clock: float  # time.monotonic() at the start of the run
    context: Mapping[str, Any]
    _first_page_at: float | None = None

    @classmethod
    def of(
        cls, settings: Settings, previous: Manifest | None, clock: float, context: Mapping[str, Any]
    ) -> DeadlineWatch | None:
        """A watch for this run; None without a previous snapshot (nothing to expect) or for one page."""
        if previous is None:
            return None
        pages = math.ceil(previous.customer_count / settings.page_size)
        if pages < 3:
            return None
        return cls(pages, settings.run_deadline_seconds, settings.function_timeout_seconds, clock, context)

    def page(self, number: int) -> None:
        """Call as each page arrives; at the second, warns when the pace says the deadline will pass."""
        now = time.monotonic()
        if number == 1:
            self._first_page_at = now
            return
        if number != 2 or self._first_page_at is None:
            return
        pace = now - self._first_page_at
        elapsed = now - self.clock
        estimate = elapsed + pace * (self.expected_pages - 2)
        if estimate <= self.deadline_seconds:
            return
        log_event(
            log,
            logging.WARNING,
            events.SNAPSHOT_DEADLINE_AT_RISK,
            expectedPages=self.expected_pages,
            pageSeconds=round(pace, 3),
            estimatedSeconds=round(estimate, 1),
            deadlineSeconds=self.deadline_seconds,
            functionTimeoutSeconds=self.function_timeout_seconds,
            advice=ADVICE,
            **self.context,
        )
