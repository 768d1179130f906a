"""Running many independent runs on a process pool or a Dask cluster.

:func:`execute` is the one entry point: it calls a picklable top-level ``func(payload)`` for
every payload and yields ``(index, result)`` as runs finish, in completion order. Two engines:

- ``local``: :class:`concurrent.futures.ProcessPoolExecutor` on this machine (``workers``
  processes, default ``os.cpu_count()``), started with ``forkserver`` so that a parent with
  threads (a progress bar, a Dask client) is never forked;
- ``dask``: :mod:`distributed`; a :class:`~distributed.LocalCluster` of ``workers`` single-threaded
  processes when ``scheduler`` is None, else ``Client(scheduler)`` on an existing cluster.

Both use their own futures and ``as_completed``; ``retries`` is Dask's own ``retries=``, and on
``local`` a failed future is submitted again, at most ``retries`` times. When ``func`` raises
(after the retries), the result is a :class:`RunFailure` record, never the exception itself, so
the caller can always pickle, log and write it. A worker process that dies (a crash, the OOM
killer) is a failure of the runs it held; the pool is rebuilt for the rest.

Ctrl-C cancels the runs not yet started, waits for nothing, and re-raises
:class:`KeyboardInterrupt` from the generator: every result yielded before it is the caller's
to keep. The worker processes ignore SIGINT themselves, so the terminal's Ctrl-C (sent to the
whole process group) stops only the parent's loop.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

ENGINES = ("local", "dask")


@dataclass(frozen=True)
class RunFailure:
    """What :func:`execute` yields for a run whose ``func`` raised (or whose worker died)."""

    index: int
    error: str  # "ExceptionType: message", one line
    traceback: str = ""
    attempts: int = 1

    def __str__(self) -> str:
        return self.error


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(index: int, exc: BaseException, attempts: int, tb: str | None = None) -> RunFailure:
    if tb is None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return RunFailure(index=index, error=_one_line(exc), traceback=tb, attempts=attempts)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Progress:
    """A tqdm bar (done/total, ETA, failures) on a terminal; nothing otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.failures = 0
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", dynamic_ncols=True, file=sys.stderr)
            self.bar.set_postfix(failed=0, refresh=False)

    def done(self, failed: bool) -> None:
        if failed:
            self.failures += 1
        if self.bar is not None:
            if failed:
                self.bar.set_postfix(failed=self.failures, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(func: Callable, payloads: Iterable, *, engine: str = "local", workers: int | None = None,
            scheduler: str | None = None, desc: str = "runs", progress: bool = True, retries: int = 0,
            skip: Iterable[int] = ()) -> Iterator[tuple[int, object]]:
    """Call ``func(payloads[i])`` for every index not in ``skip``; yield ``(i, result)`` as runs finish.

    ``result`` is what ``func`` returned, or a :class:`RunFailure` when it raised on every
    attempt. The order is the order of completion: sort by index for anything written.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    if retries < 0:
        raise ValueError("retries must not be negative")
    payloads = list(payloads)
    skipped = set(skip)
    todo = [i for i in range(len(payloads)) if i not in skipped]
    bar = _Progress(len(todo), desc, progress)
    try:
        runner = _local if engine == "local" else _dask
        for index, result in runner(func, payloads, todo, workers=workers, scheduler=scheduler, retries=retries):
            bar.done(isinstance(result, RunFailure))
            yield index, result
    finally:
        bar.close()


# --- local: a process pool ------------------------------------------------------------------------


def _pool(func: Callable, workers: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    if ctx.get_start_method() == "forkserver":
        # the server imports the run function's module once; each worker forks from it warm
        ctx.set_forkserver_preload([func.__module__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint)


def _local(func, payloads, todo, *, workers, scheduler, retries) -> Iterator[tuple[int, object]]:
    if scheduler is not None:
        raise ValueError("--scheduler applies to the dask engine only")
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    if not todo:
        return
    attempts = dict.fromkeys(todo, 0)
    pending_order = list(todo)
    pool = _pool(func, workers)
    running: dict = {}

    def submit(i: int) -> None:
        attempts[i] += 1
        running[pool.submit(func, payloads[i])] = i

    try:
        for i in pending_order:
            submit(i)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[int] = []
            for fut in finished:
                i = running.pop(fut)
                exc = fut.exception()
                if exc is None:
                    yield i, fut.result()
                elif isinstance(exc, BrokenProcessPool):
                    broken.append(i)
                elif attempts[i] <= retries:
                    submit(i)
                else:
                    yield i, _failure(i, exc, attempts[i])
            if broken:
                # a worker died: every run still in the pool is lost with it; the runs that
                # were in the dead pool are failures (or retried), and a new pool takes the rest
                broken.extend(running.values())
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _pool(func, workers)
                for i in sorted(broken):
                    if attempts[i] <= retries:
                        submit(i)
                    else:
                        yield i, RunFailure(index=i, error="BrokenProcessPool: the worker process running it died",
                                            attempts=attempts[i])
    except BaseException:
        for fut in running:
            fut.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# --- dask: dask.distributed -----------------------------------------------------------------------


def _dask(func, payloads, todo, *, workers, scheduler, retries) -> Iterator[tuple[int, object]]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - the [sweep] extra is not installed
        raise RuntimeError("the dask engine needs dask.distributed: pip install 'clustersim[sweep]'") from None
    if not todo:
        return
    cluster = None
    if scheduler is None:
        n = min(workers or os.cpu_count() or 1, max(len(todo), 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    futures: dict = {}
    try:
        for i in todo:
            fut = client.submit(func, payloads[i], key=f"{func.__name__}-{i}-{os.getpid()}-{id(futures):x}",
                                retries=retries, pure=False)
            futures[fut.key] = (i, fut)
        for fut in as_completed([f for _, f in futures.values()]):
            i = futures[fut.key][0]
            if fut.status == "finished":
                yield i, fut.result()
            else:
                exc = fut.exception()
                tb = "".join(traceback.format_tb(fut.traceback())) if fut.traceback() is not None else ""
                yield i, _failure(i, exc, retries + 1, tb=tb)
            futures.pop(fut.key, None)
            fut.release()
    except BaseException:
        if futures:
            client.cancel([f for _, f in futures.values()])
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
