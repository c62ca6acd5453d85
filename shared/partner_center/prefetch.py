"""The next page's request on the wire while this one is parsed.

Paging is sequential by nature (each page names the next), so the pager guesses the next request from the
end of the page in hand and starts it here, on a helper thread, before parsing, validating and
de-duplicating the page. `take` returns the answer when the guess was the request wanted, and otherwise
waits it out, drops it and fetches the one wanted: a wrong guess costs one discarded request, never a wrong
page.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from shared.partner_center.fetch import PageRequest
from shared.transport.adapters import signalling_sent

# json.loads of a page holds the GIL for milliseconds (one C call: no other thread runs meanwhile), so the
# job's thread waits until the prefetch thread has put its request on the wire (about 2 ms of Python in
# the HTTP library on a small CPU, more when other threads want the GIL), at most this long.
SEND_WAIT = 0.02


class Prefetch:
    """At most one page request in flight on a helper thread; `take` returns its answer when it was the
    request wanted, and otherwise waits it out, drops it and fetches the one wanted here."""

    def __init__(self, fetch: Callable[[PageRequest, int], bytes | None]) -> None:
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="partner-center-prefetch")
        self._pending: tuple[PageRequest, Future[bytes | None]] | None = None

    def start(self, request: PageRequest, number: int) -> None:
        """Fetches `request` on the helper thread; returns once it is on the wire (or SEND_WAIT passed)."""
        sent = threading.Event()

        def fetch() -> bytes | None:
            try:
                with signalling_sent(sent.set):
                    return self._fetch(request, number)
            finally:
                sent.set()  # not sent at all (an error): nobody waits for it

        self._pending = (request, self._pool.submit(fetch))
        sent.wait(SEND_WAIT)

    def take(self, request: PageRequest, number: int) -> bytes | None:
        pending, self._pending = self._pending, None
        if pending is not None:
            guessed, future = pending
            if guessed == request:
                return future.result()  # its errors are this page's errors
            with contextlib.suppress(Exception):
                future.result()
        return self._fetch(request, number)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # A run that stops early (an error, the last page) does not wait for a request nobody wants.
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        self._pool.shutdown(wait=False, cancel_futures=True)
