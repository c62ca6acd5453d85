"""The keys of every customer a run has received, for de-duplication: exact, in bounded memory.

A Python set costs about 80 bytes per tenant GUID (a 128-bit int object and its slot), 80 MB at a million
customers. Up to SMALL keys a plain set it stays (small and medium partners pay nothing more). Past that,
the GUID keys move to a temporary SQLite file (16 bytes each) behind an 8 MB Bloom filter: a key the
filter has never seen is new for certain, which is almost every key; only the rare maybe (about 0.1% at a
million customers) asks SQLite, which answers exactly. Keys are written to SQLite in batches; until then
they are in a small set that is checked first. Other ids (not GUIDs: rare) stay in the set.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile

SMALL = 100_000  # keys kept in a plain set before the rest go to disk
_BITS = 1 << 26  # Bloom filter bits (8 MB): two probes per key
_MASK = _BITS - 1
_BATCH = 5_000  # keys per write to SQLite


class SeenKeys:
    def __init__(self, small: int | None = None) -> None:
        self._small_limit = SMALL if small is None else small
        self._set: set[int | str] = set()
        self._bloom: bytearray | None = None
        self._pending: set[int] = set()  # added since the last write to SQLite
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None

    def __contains__(self, key: int | str) -> bool:
        bloom = self._bloom
        if bloom is None or isinstance(key, str):
            return key in self._set
        low, high = key & _MASK, (key >> 64) & _MASK
        if not (bloom[low >> 3] >> (low & 7)) & 1 or not (bloom[high >> 3] >> (high & 7)) & 1:
            return False
        return key in self._pending or self._stored(key)

    def add(self, key: int | str) -> None:
        """Adds a key not in the set yet (callers check first)."""
        bloom = self._bloom
        if bloom is None or isinstance(key, str):
            self._set.add(key)
            if bloom is None and len(self._set) > self._small_limit:
                self._move_to_disk()
            return
        low, high = key & _MASK, (key >> 64) & _MASK
        bloom[low >> 3] |= 1 << (low & 7)
        bloom[high >> 3] |= 1 << (high & 7)
        self._pending.add(key)
        if len(self._pending) >= _BATCH:
            self._write()

    def close(self) -> None:
        """Lets go of every key (the Bloom filter, the set, the SQLite file): the run has no more pages."""
        self._bloom = None
        self._set, self._pending = set(), set()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _move_to_disk(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="seen-")
        self._db = sqlite3.connect(f"{self._dir.name}/seen.sqlite", check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2048;"
            "CREATE TABLE seen (k BLOB PRIMARY KEY) WITHOUT ROWID;"
        )
        self._bloom = bytearray(_BITS // 8)
        guids = [key for key in self._set if isinstance(key, int)]
        self._set = {key for key in self._set if isinstance(key, str)}
        for key in guids:
            self.add(key)
        self._write()

    def _write(self) -> None:
        assert self._db is not None
        self._db.executemany("INSERT INTO seen VALUES (?)", ((k.to_bytes(16, "big"),) for k in self._pending))
        self._pending = set()

    def _stored(self, key: int) -> bool:
        assert self._db is not None
        found = self._db.execute("SELECT 1 FROM seen WHERE k = ?", (key.to_bytes(16, "big"),)).fetchone()
        return found is not None
