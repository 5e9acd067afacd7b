"""A keyed timer heap for TU-level timers (2xx retransmission, registration refresh).

Pure: deadlines are plain floats; nothing here reads a clock. Re-arming a key replaces its
deadline (lazy deletion keeps every operation O(log n)).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable

__all__ = ["TimerHeap"]


class TimerHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._live

    def set(self, key: Hashable, deadline: float) -> None:
        seq = next(self._seq)
        self._live[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def deadline(self, key: Hashable) -> float | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def _prune(self) -> None:
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            if self._live.get(key) == (deadline, seq):
                return
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Keys whose deadline is <= now, earliest first; they are removed."""
        due: list[Hashable] = []
        while True:
            self._prune()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            due.append(key)
