"""Where many independent pieces of work run: in this process, a local process pool, or Ray.

One interface, :meth:`Engine.map`: ``fn(shared, item)`` for every item, results yielded as they
complete (not in order), with a progress bar. ``shared`` (a model, a folder's texts) is sent to
each worker once, not with every item, and deserialised there once. A failure of one item (any
exception) is yielded as an :class:`Outcome` with its error and does not stop the others.

Backends, chosen by :func:`engine`:

- ``inline``: one worker and no cluster: the items run here, one after the other.
- ``ray``: when the ``dist`` extra is installed (``pip install 'codesign[dist]'``): an embedded
  local Ray with ``workers`` CPUs (no dashboard, quiet logs, shut down at the end), or an
  existing cluster with ``address`` (``ray start --head`` on one node, ``ray start --address``
  on the others; every node needs codesign installed at the same version).
- ``pool``: without Ray, a local :class:`concurrent.futures.ProcessPoolExecutor` of ``workers``
  processes.

Ctrl-C or SIGTERM ends the workers (Ray tasks are cancelled and Ray shut down; pool processes
are terminated) and re-raises in the caller.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Optional, Sequence, TypeVar

from .errors import CodesignError

T = TypeVar("T")
BACKENDS = ("inline", "pool", "ray")
#: Object store of the embedded Ray (the items are small; Ray's default takes 30 % of the RAM).
RAY_OBJECT_STORE_BYTES = 256 * 2**20


@dataclass
class Outcome(Generic[T]):
    """The result of one item: ``value`` (None when it failed), or ``error``, one line naming the
    exception (``ExceptionType: message``; a :class:`CodesignError` by its message alone)."""

    index: int
    item: Any
    value: Optional[T]
    error: Optional[str]

    @property
    def ok(self) -> bool:
        return self.error is None


def cpu_count() -> int:
    """CPUs this process may use (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return os.cpu_count() or 1


def ray_available() -> bool:
    """Whether the ``dist`` extra (Ray) is installed."""
    return importlib.util.find_spec("ray") is not None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CodesignError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _call(fn: Callable[[Any, Any], T], shared: Any, index: int, item: Any) -> tuple[int, Optional[T], Optional[str]]:
    """Run one item where it was sent; exceptions come back as text (they may not unpickle here)."""
    try:
        return index, fn(shared, item), None
    except Exception as exc:  # noqa: BLE001 - reported with the item, the others go on
        return index, None, _describe(exc)


# --- process pool: the shared value reaches each worker once, through the initializer ---------

_pool_shared: Any = None


def _pool_init(shared: Any) -> None:
    global _pool_shared
    _pool_shared = shared


def _pool_call(fn: Callable[[Any, Any], T], index: int, item: Any) -> tuple[int, Optional[T], Optional[str]]:
    return _call(fn, _pool_shared, index, item)


# --- Ray: the shared value is fetched once per worker process, not deserialised for every item --

_ray_shared: dict[str, Any] = {}


def _ray_call(fn: Callable[[Any, Any], T], boxed: list, index: int, item: Any) -> tuple[int, Optional[T], Optional[str]]:
    """``boxed`` holds the shared value's object reference (in a list, so Ray does not resolve it
    for every task); this worker fetches it the first time and keeps only the newest."""
    import ray

    (ref,) = boxed
    if ref.hex() not in _ray_shared:
        _ray_shared.clear()
        _ray_shared[ref.hex()] = ray.get(ref)
    return _call(fn, _ray_shared[ref.hex()], index, item)


class Engine:
    """Runs ``fn(shared, item)`` over items on ``workers`` CPUs through ``backend`` (see the module)."""

    def __init__(self, backend: str, workers: int, address: Optional[str] = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend}")
        self.backend, self.workers, self.address = backend, workers, address

    @property
    def local(self) -> bool:
        """Whether every worker runs on this machine (and sees its files)."""
        return self.address is None

    def describe(self) -> str:
        """One line for the log: where the work runs."""
        if self.backend == "inline":
            return "1 worker (in this process)"
        if self.backend == "pool":
            return f"{self.workers} workers (local process pool; install the 'dist' extra for Ray)"
        return f"Ray cluster at {self.address}" if self.address else f"{self.workers} workers (local Ray)"

    def map(self, fn: Callable[[Any, Any], T], items: Sequence[Any], shared: Any = None, desc: str = "",
            unit: str = "item", size: Callable[[Any], int] = lambda item: 1,
            progress: bool = True) -> Iterator[Outcome[T]]:
        """``fn(shared, item)`` for every item, yielded as each completes. ``fn`` must be a module-level
        function (it is pickled); ``size(item)`` is what an item adds to the bar (e.g. its tiles)."""
        from .progress import Progress

        items = list(items)
        run = {"inline": self._inline, "pool": self._pool, "ray": self._ray}[self.backend]
        with Progress(desc=desc, total=sum(size(item) for item in items), unit=unit, enabled=progress) as bar:
            for index, value, error in run(fn, items, shared):
                bar.update(size(items[index]))
                yield Outcome(index, items[index], value, error)

    def _inline(self, fn: Callable, items: list, shared: Any) -> Iterator[tuple]:
        for index, item in enumerate(items):
            yield _call(fn, shared, index, item)

    def _pool(self, fn: Callable, items: list, shared: Any) -> Iterator[tuple]:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        executor = ProcessPoolExecutor(max_workers=min(self.workers, max(1, len(items))), initializer=_pool_init,
                                       initargs=(shared,))
        try:
            pending = {executor.submit(_pool_call, fn, index, item) for index, item in enumerate(items)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            processes = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:            # running items end now, not when they finish
                process.terminate()
            raise
        executor.shutdown(wait=True)

    def _ray(self, fn: Callable, items: list, shared: Any) -> Iterator[tuple]:
        import ray

        started = start_ray(self.workers, self.address)
        refs: list = []
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
            boxed = [ray.put(shared)]
            refs = [task.remote(fn, boxed, index, item) for index, item in enumerate(items)]
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:     # the worker died (killed, out of memory)
                        index = refs.index(ref)
                        yield index, None, f"the Ray worker failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()


def start_ray(workers: int, address: Optional[str]) -> bool:
    """Connect to the cluster at ``address``, or start an embedded one with ``workers`` CPUs; True
    when this call started the connection (the caller shuts it down)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                               "configure_logging": True}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if address is not None:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, object_store_memory=RAY_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise CodesignError(f"cannot start {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                            f"check the address ('ray status' on the head node) or run without --ray") from None
    finally:
        _restore(handlers)
    return True


def _restore(handlers: dict[int, Any]) -> None:
    """Put back the signal handlers ``ray.init`` replaced (its own and a C-level one that dies by the
    signal): Ctrl-C and SIGTERM must reach the caller's clean-up. Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _unreachable(address: str) -> Optional[str]:
    """Why nothing answers at ``HOST:PORT`` (``ray://HOST:PORT`` for Ray Client), or None; ``auto``
    (the cluster this node belongs to) is left to Ray. Checked first: Ray retries a dead address
    for minutes."""
    import socket

    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return "give HOST:PORT (the head node's GCS address, e.g. 10.0.0.1:6379), ray://HOST:PORT or auto"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def engine(workers: Optional[int] = None, address: Optional[str] = None, backend: Optional[str] = None) -> Engine:
    """The engine for ``--workers`` (default: the machine's CPUs) and ``--ray ADDRESS``.

    ``backend`` forces one (tests); otherwise Ray with an address, else inline for one worker, else
    Ray when installed, else the process pool. Raises :class:`CodesignError` for ``--ray``
    without the ``dist`` extra or at an address where nothing answers, or fewer than one worker.
    """
    if workers is not None and workers < 1:
        raise CodesignError(f"--workers must be at least 1, not {workers}")
    if (address is not None or backend == "ray") and not ray_available():
        what = "--ray" if address is not None else "the ray backend"
        raise CodesignError(f"{what} needs Ray: install the 'dist' extra (pip install 'codesign[dist]')")
    if address is not None and (problem := _unreachable(address)):
        raise CodesignError(f"cannot reach the Ray cluster at {address}: {problem}; check the address ('ray status' "
                            f"on the head node) or run without --ray")
    workers = workers or cpu_count()
    if backend is None:
        backend = "ray" if address is not None else "inline" if workers == 1 else \
            "ray" if ray_available() else "pool"
    return Engine(backend, workers, address)
