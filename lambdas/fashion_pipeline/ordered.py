"""Work done ahead on a thread pool and handed back in input order (the converter's image
probes, the assembly children's GETs)."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import Any, Iterable, Iterator

PER_THREAD = 4  # jobs outstanding per pool thread: every thread stays busy


def in_order(jobs: Iterable[tuple[Any, int]], *, window: int, max_weight: int | None = None) -> Iterator[Any]:
    """The results of ``jobs``, in their order.

    Each job is (a Future, or a result already known; its weight, e.g. the bytes it brings).
    A job is taken from ``jobs`` (which may submit it then) only while fewer than ``window``
    are outstanding and, with ``max_weight``, while their weights add up to no more than that
    (one at least is always outstanding). A sliding window rather than chunks: no barrier
    between chunks, and memory bounded whatever the input's size.
    """
    pending: deque[tuple[Any, int]] = deque()
    held = 0
    for job, weight in jobs:
        pending.append((job, weight))
        held += weight
        while len(pending) >= window or (max_weight is not None and held > max_weight and len(pending) > 1):
            done, done_weight = pending.popleft()
            held -= done_weight
            yield _result(done)
    while pending:
        yield _result(pending.popleft()[0])


def _result(job: Any) -> Any:
    return job.result() if isinstance(job, Future) else job
