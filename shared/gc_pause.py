"""Pausing Python's cyclic garbage collector around bursts of short-lived, acyclic objects.

Reading a page of customers, or loading a snapshot, builds thousands of small dicts that reference
counting frees on its own; the cyclic collector would still stop the world every few thousand
allocations to walk every live object (the SDKs' included) and find nothing to free.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block; afterwards the collector is as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
