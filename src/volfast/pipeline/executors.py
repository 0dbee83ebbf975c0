"""Executors: run day tasks in this process, in a local process pool, or on a Dask cluster.

Every executor takes the same picklable :class:`~volfast.pipeline.tasks.DayTask` objects and a task
function (:func:`~volfast.pipeline.tasks.run_day`), and hands each small result dict to ``on_result`` as it
arrives. Thread limits: each worker gets ``threads`` threads for the C++ core (``VOLFAST_NUM_THREADS``),
Numba (``NUMBA_NUM_THREADS`` and ``numba.set_num_threads``) and BLAS / OpenMP (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``), set in the environment *before* the worker process starts
(these libraries read them once, at import) so that ``workers * threads`` never exceeds the cores.

A worker that dies (killed, out of memory, a crash in native code) costs its day an attempt; a day whose
worker died more than ``retries + 1`` times is reported failed with that reason, and the others go on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from volfast.pipeline.config import ExecutorConfig
from volfast.pipeline.tasks import DayTask

__all__ = ["THREAD_ENV_VARS", "apply_thread_limits", "run_tasks", "thread_env"]

TaskFn = Callable[[DayTask], dict[str, Any]]
OnResult = Callable[[dict[str, Any]], None]

THREAD_ENV_VARS: tuple[str, ...] = (
    "VOLFAST_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that cap the C++, Numba and BLAS thread pools at ``threads``."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return {k: str(threads) for k in THREAD_ENV_VARS}


def apply_thread_limits(threads: int) -> dict[str, Any]:
    """Cap this process's thread pools at ``threads`` (runs in each worker) and say what was set.

    Environment variables cover libraries not imported yet; Numba and torch, if already imported, are set
    directly (Numba cannot go above the ``NUMBA_NUM_THREADS`` it started with).
    """
    os.environ.update(thread_env(threads))
    got: dict[str, Any] = {"threads": threads}
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        got["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        got["torch"] = torch.get_num_threads()
    return got


@contextlib.contextmanager
def _restored_environ(keys: Sequence[str]) -> Iterator[None]:
    """Put ``keys`` of ``os.environ`` back as they were on exit (dask's Nanny writes its
    ``pre-spawn-environ`` into the parent's environment for good, at every worker (re)start; left there,
    ``NUMBA_NUM_THREADS=1`` makes Numba raise on the parent's next compile)."""
    old = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def failed_record(task: DayTask, error: str, error_type: str, file: str | None = None) -> dict[str, Any]:
    """The record of a day that failed outside its task function (the same keys as
    :func:`~volfast.pipeline.tasks.run_day`'s)."""
    return {
        "date": task.date.isoformat(),
        "status": "failed",
        "stages": {},
        "reasons": [],
        "warnings": [],
        "error": error,
        "error_type": error_type,
        "file": file,
        "seed": task.seed,
    }


def _worker_died(task: DayTask, attempts: int, detail: str) -> dict[str, Any]:
    msg = f"the worker process died while running this day ({attempts} attempt(s)): {detail}"
    return failed_record(task, msg, "WorkerDied")


# -- serial ---------------------------------------------------------------------------------------------
def _run_serial(tasks: Sequence[DayTask], task_fn: TaskFn, on_result: OnResult) -> None:
    for t in tasks:
        on_result(task_fn(t))


# -- local process pool -----------------------------------------------------------------------------------
def _init_local_worker(threads: int) -> None:
    # Ctrl-C goes to the whole process group: the parent alone handles it (and stops the workers), so a
    # worker is never interrupted inside a library call with its state half-updated.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    apply_thread_limits(threads)


def _run_local(tasks: Sequence[DayTask], cfg: ExecutorConfig, task_fn: TaskFn, on_result: OnResult) -> None:
    import multiprocessing as mp

    workers = min(cfg.resolved_workers(), max(1, len(tasks)))
    threads = cfg.resolved_threads(workers)
    # spawn: a fresh interpreter per worker that imports the thread-pool libraries after the limits are
    # in its environment (fork would inherit the parent's already-started pools).
    ctx = mp.get_context("spawn")
    pending = list(reversed(tasks))  # pop() from the end keeps date order
    attempts: dict[Any, int] = {}
    # Workers are spawned lazily (at submit, and again after a pool breaks) and inherit this environment:
    # the limits must be in it before their first import of numpy/numba (unpickling the initializer already
    # imports volfast). The parent's own pools started long ago and ignore the change; it is undone on exit.
    with _environ(thread_env(threads)):
        _local_loop(pending, attempts, workers, threads, ctx, cfg, task_fn, on_result)


def _local_loop(
    pending: list[DayTask],
    attempts: dict[Any, int],
    workers: int,
    threads: int,
    ctx: Any,
    cfg: ExecutorConfig,
    task_fn: TaskFn,
    on_result: OnResult,
) -> None:
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    while pending:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_local_worker, initargs=(threads,)
        )
        running: dict[Future[dict[str, Any]], DayTask] = {}
        broken = False
        try:
            while pending or running:
                # At most `workers` days in flight: every task in `running` is really running, so a dead
                # worker can only have been running one of them.
                while pending and len(running) < workers and not broken:
                    t = pending.pop()
                    running[pool.submit(task_fn, t)] = t
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    t = running.pop(fut)
                    try:
                        res = fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        n = attempts[t.date] = attempts.get(t.date, 0) + 1
                        if n > cfg.retries:
                            on_result(_worker_died(t, n, str(exc) or "process pool broken"))
                        else:
                            pending.append(t)
                        continue
                    except Exception as exc:  # the task function itself raised (run_day does not)
                        res = _worker_died(t, 1, f"{type(exc).__name__}: {exc}")
                        res["error_type"] = type(exc).__name__
                        res["error"] = str(exc)
                    on_result(res)
                if broken and not running:
                    break  # start a fresh pool for what is left
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or an error in on_result: stop the workers now
            _kill_pool(pool)
            raise
        pool.shutdown(wait=True, cancel_futures=True)


def _kill_pool(pool: Any) -> None:
    """Terminate a ProcessPoolExecutor's workers at once (their half-done days leave only temp files)."""
    procs = list(getattr(pool, "_processes", {}).values())  # no public handle on the processes
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


# -- dask.distributed -----------------------------------------------------------------------------------
def _dask_warm(threads: int, warm: Callable[[], None] | None) -> dict[str, Any]:
    got = apply_thread_limits(threads)
    if warm is not None:
        warm()
    return got


def _run_dask(
    tasks: Sequence[DayTask],
    cfg: ExecutorConfig,
    task_fn: TaskFn,
    on_result: OnResult,
    warm: Callable[[], None] | None,
) -> None:
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise RuntimeError(
            "the dask executor needs dask.distributed: python -m pip install 'volfast[dist]'"
        ) from None

    cluster = None
    if cfg.scheduler:
        client = Client(cfg.scheduler)
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        threads = cfg.threads_per_worker or 1
    else:
        workers = cfg.workers or min(max(1, os.cpu_count() or 1), max(1, len(tasks)))
        threads = cfg.resolved_threads(workers)
        # The limits go into each worker's environment before its process starts; allowed-failures is how
        # many worker deaths a task survives before the scheduler gives up on it (KilledWorker).
        with dask.config.set(
            {
                "distributed.nanny.pre-spawn-environ": {
                    **dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                    **thread_env(threads),
                },
                "distributed.scheduler.allowed-failures": cfg.retries,
                # One task per worker thread, none queued behind it: a worker that dies takes only the day
                # it was running into its count of failures, not the innocent days queued on it.
                "distributed.scheduler.worker-saturation": 1.0,
            }
        ):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,  # one day at a time per worker; the day's own threads are capped above
                processes=True,
                dashboard_address=None,
            )
            client = Client(cluster)
    futs: dict[Any, DayTask] = {}
    try:
        # Existing clusters started long ago: set the limits now; every worker compiles (or loads the cached)
        # Numba kernels once, before days arrive.
        client.run(_dask_warm, threads, warm)
        # A sliding window of one day per worker (same reason as worker-saturation above, and it holds for an
        # existing cluster too).
        pending = list(reversed(tasks))

        def submit_next() -> Any:
            t = pending.pop()
            f = client.submit(task_fn, t, key=f"volfast-day-{t.date.isoformat()}-{id(t):x}", pure=False)
            futs[f] = t
            return f

        ac = as_completed([submit_next() for _ in range(min(workers, len(pending)))])
        for f in ac:
            t = futs.pop(f)
            try:
                res = f.result()
            except KilledWorker as exc:
                res = _worker_died(t, cfg.retries + 1, str(exc))
            except FutureCancelledError as exc:
                res = _worker_died(t, 1, f"cancelled: {exc}")
            except Exception as exc:  # the task function itself raised (run_day does not)
                res = _worker_died(t, 1, f"{type(exc).__name__}: {exc}")
                res["error_type"], res["error"] = type(exc).__name__, str(exc)
            f.release()
            if pending:
                ac.add(submit_next())
            on_result(res)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(futs))
        client.close()
        if cluster is not None:
            cluster.close()


# -- entry point ------------------------------------------------------------------------------------------
def run_tasks(
    tasks: Sequence[DayTask],
    executor: ExecutorConfig,
    *,
    task_fn: TaskFn,
    on_result: OnResult,
    warm: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``task_fn`` over ``tasks`` with the configured executor; ``on_result`` gets each result.

    ``warm`` (the stages' warm-up) runs once in this process before a local pool starts, so Numba's
    ``cache=True`` files exist when the workers import the kernels; on Dask it runs once on every worker.

    Returns
    -------
    dict
        ``kind``, ``workers`` and ``threads_per_worker`` actually used.
    """
    if not tasks:
        return {"kind": executor.kind, "workers": 0, "threads_per_worker": 0}
    if executor.kind == "serial":  # no warm-up: the first day compiles what it needs, once
        _run_serial(tasks, task_fn, on_result)
        return {"kind": "serial", "workers": 1, "threads_per_worker": executor.resolved_threads(1)}
    if executor.kind == "local":
        if warm is not None:
            warm()
        workers = min(executor.resolved_workers(), len(tasks))
        _run_local(tasks, executor, task_fn, on_result)
        return {"kind": "local", "workers": workers, "threads_per_worker": executor.resolved_threads(workers)}
    if executor.kind == "dask":
        import dask

        spawn_env = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
        with _restored_environ([*THREAD_ENV_VARS, *spawn_env, "PYTHONHASHSEED"]):
            _run_dask(tasks, executor, task_fn, on_result, warm)
        w = executor.workers or min(max(1, os.cpu_count() or 1), len(tasks))
        return {"kind": "dask", "workers": w, "threads_per_worker": executor.resolved_threads(w)}
    raise ValueError(f"unknown executor kind {executor.kind!r}")
