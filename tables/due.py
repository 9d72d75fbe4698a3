"""When keys of a table partition next need attention (deadline or expiry): a time wheel.

Derived from table state: the owning agent rebuilds it from the table after every rebalance and
adds a key whenever its due time changes, so nothing here must survive a crash.

Memory is what matters: a worker holds millions of states (every post of every album in flight
has an index entry), and a dict entry plus a heap tuple per key cost about 250 bytes (1.2 GB for
4.8 million keys). Here a key costs 8 bytes in the array of the second it falls due in. The
price: a key scheduled again leaves its older entry behind, and a deleted key is not removed.
`pop_due` therefore returns candidates, and the caller checks each one against its state's own
due time (agents/keyed.py) before acting on it.
"""

from __future__ import annotations

import heapq
import math
from array import array


class DueIndex:
    """Integer keys in per-second buckets, per partition, popped in time order."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[int, array[int]]] = {}
        self._seconds: dict[int, list[int]] = {}
        self.entries = 0
        self.assignment: frozenset[int] | None = None

    def __len__(self) -> int:
        """Entries held (stale ones included)."""
        return self.entries

    def clear(self, assignment: frozenset[int] | None = None) -> None:
        self._buckets.clear()
        self._seconds.clear()
        self.entries = 0
        self.assignment = assignment

    def set(self, partition: int, key: str, due: float | None) -> None:
        """Schedule `key` (the decimal string of an integer id) at `due`; None: nothing."""
        if due is None or not math.isfinite(due):
            return
        # rounded up: a key is never offered before its due time
        second = math.ceil(due)
        buckets = self._buckets.get(partition)
        if buckets is None:
            buckets = self._buckets[partition] = {}
            self._seconds[partition] = []
        bucket = buckets.get(second)
        if bucket is None:
            bucket = buckets[second] = array("q")
            heapq.heappush(self._seconds[partition], second)
        bucket.append(int(key))
        self.entries += 1

    def pop_due(self, partition: int, now: float, limit: int = 1000) -> list[str]:
        """Keys of `partition` scheduled at or before `now` (at most `limit`), removed from the
        index: candidates to check against their state (see the module docstring)."""
        seconds = self._seconds.get(partition)
        if not seconds:
            return []
        buckets = self._buckets[partition]
        out: list[str] = []
        while seconds and seconds[0] <= now and len(out) < limit:
            bucket = buckets[seconds[0]]
            take = min(len(bucket), limit - len(out))
            out.extend(str(k) for k in bucket[len(bucket) - take :])
            del bucket[len(bucket) - take :]
            if not bucket:
                del buckets[heapq.heappop(seconds)]
        self.entries -= len(out)
        return out

    def next_due(self, partition: int) -> int | None:
        """The earliest second with a key of `partition`, if any."""
        seconds = self._seconds.get(partition)
        return seconds[0] if seconds else None
