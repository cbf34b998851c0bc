"""Run independent data-generation tasks on every core with one progress bar."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import cv2
from tqdm import tqdm

T = TypeVar("T")


def default_workers() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def limit_opencv_threads(*_) -> None:
    """For worker processes: one process per core already, so OpenCV's own thread pool would
    only oversubscribe. 0, not 1: in a child forked after the parent used OpenCV's pool,
    setNumThreads(1) rebuilds the pool and deadlocks (OpenCV 5, glibc)."""
    cv2.setNumThreads(0)


def _init_worker() -> None:
    limit_opencv_threads()
    # Ctrl-C is the parent's to handle: it terminates the pool (SIGTERM, which may cut a write
    # short), and the dataset writer then removes the temporary files (layout.writing_dataset).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> mp.context.BaseContext:
    """Workers come from a fork server where there is one: forking the caller itself copies
    the locks of whatever threads it runs (PyTorch's, OpenCV's, a progress bar's) and can
    hang a worker for good; the server is a clean single-threaded process."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "cv2", "maskdepth.train.data.parallel"])
    return context


def _call(job: tuple[int, Callable, Any]) -> tuple[int, Any]:
    index, fn, task = job
    return index, fn(task)


def run_tasks(
    fn: Callable[[T], tuple[int, Any]],
    tasks: Sequence[T],
    *,
    workers: int | None = None,
    desc: str = "working",
    unit: str = "scene",
    total: int | None = None,
    progress: bool = True,
) -> tuple[list[Any], float]:
    """Apply ``fn`` to every task, in worker processes when ``workers`` > 1.

    ``fn(task)`` returns ``(items_done, result)``; the bar advances by ``items_done`` (``total``
    of them in all) and the results come back in task order, with the elapsed seconds. ``fn``
    must be a module-level function so that it pickles. Workers start from a fork server (or
    are spawned), so a script that calls this needs the ``if __name__ == "__main__":`` guard.
    """
    workers = default_workers() if workers is None else max(1, workers)
    workers = min(workers, max(1, len(tasks)))
    results: list[Any] = [None] * len(tasks)
    start = time.perf_counter()
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        jobs: Iterable[tuple[int, Callable, Any]] = ((i, fn, t) for i, t in enumerate(tasks))
        if workers == 1:
            done = map(_call, jobs)
            for index, (count, result) in done:
                results[index] = result
                bar.update(count)
        else:
            with _context().Pool(workers, _init_worker) as pool:
                for index, (count, result) in pool.imap_unordered(_call, jobs):
                    results[index] = result
                    bar.update(count)
    return results, time.perf_counter() - start
