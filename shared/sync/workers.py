"""Bounded concurrency across subscriptions, with a time budget and no unit of work lost."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared.deadline import DeadlineReached
from shared.sync.runs import SyncRun

T = TypeVar("T")


def for_each(
    run: SyncRun,
    items: Iterable[T],
    work: Callable[[T], bool],
    *,
    concurrency: int,
    name: Callable[[T], str],
    out_of_time: Callable[[], bool] | None = None,
) -> tuple[int, int]:
    """Run ``work`` on each item, ``concurrency`` at a time, in the order given; returns (done, pending).

    ``work`` returns True when the item is fully done, False when some of it is left for the next run.
    An item reached after the time budget (``out_of_time``, default the run's) is spent is pending without
    being touched, and so is one whose work met the run's deadline. An exception is recorded against that item
    only; the others carry on.
    """
    spent = out_of_time or run.out_of_time
    counts = {"done": 0, "pending": 0}
    lock = threading.Lock()

    def guarded(item: T) -> None:
        finished = False
        if not spent():
            try:
                finished = work(item)
            except DeadlineReached as exc:  # not a failure: what it left is pending, and nothing more starts
                run.reached_deadline(name(item), exc)
            except Exception as exc:  # one item's failure must not stop the others
                run.fail(name(item), exc)
        with lock:
            counts["done" if finished else "pending"] += 1

    if concurrency <= 1:
        for item in items:
            guarded(item)
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sync") as pool:
            for _ in pool.map(guarded, items):
                pass
    return counts["done"], counts["pending"]
