"""When each key of a table partition next needs attention (deadline or expiry).

An in-memory heap per partition, derived from table state: the owning agent rebuilds it from the
table after every rebalance and updates it on every write, so nothing here must survive a crash.
"""

from __future__ import annotations

import heapq


class DueIndex:
    """Keys by due time, per partition, with lazy deletion of superseded entries."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._due: dict[str, tuple[int, float]] = {}
        self.assignment: frozenset[int] | None = None

    def __len__(self) -> int:
        return len(self._due)

    def clear(self, assignment: frozenset[int] | None = None) -> None:
        self._heaps.clear()
        self._due.clear()
        self.assignment = assignment

    def set(self, partition: int, key: str, due: float | None) -> None:
        """Schedule `key` at `due` (None: nothing due, forget it)."""
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == (partition, due):
            return
        self._due[key] = (partition, due)
        heapq.heappush(self._heaps.setdefault(partition, []), (due, key))

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def pop_due(self, partition: int, now: float, limit: int = 1000) -> list[str]:
        """Keys of `partition` due at `now` (at most `limit`), removed from the index."""
        heap = self._heaps.get(partition)
        out: list[str] = []
        while heap and heap[0][0] <= now and len(out) < limit:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == (partition, due):
                del self._due[key]
                out.append(key)
        if heap is not None and len(heap) > 4 * len(self._due) + 64:
            self._compact(partition)
        return out

    def _compact(self, partition: int) -> None:
        live = [(d, k) for k, (p, d) in self._due.items() if p == partition]
        heapq.heapify(live)
        self._heaps[partition] = live
