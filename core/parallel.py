"""Where parallel work runs: a local process pool (the default) or a Ray cluster, behind one interface.

Every parallel stage (``collect``, real-env fitness in ``train-controller``, ``evaluate``) hands an executor
one ``shared`` payload (checkpoint bytes, a policy factory, a rollout spec) and then maps a picklable
module-level function ``fn(shared, item)`` over items (track seeds, candidate parameters). The payload reaches
each worker once (pool initializer; Ray object store), so items stay small. Results come back as they finish,
tagged with the item's index.

Workers run one torch thread each (2 worker processes on 2 cores beat any threading, see DESIGN.md).
Local workers die with the process that started them (however it ends, ``kill -9`` included) and ignore
SIGINT and SIGHUP, which a terminal sends to the whole process group: the parent alone decides to stop, lets
the running tasks finish and shuts the pool down, as for a signal sent to it alone.
A worker that dies (killed, out of memory, segfault) raises :class:`WorkerCrashed`; an exception inside a task
raises :class:`TaskFailed` naming the task, except Dream Explorer's own one-line errors, which pass through.
Workers that all die before starting (a script without an ``if __name__ == "__main__":`` guard: each spawned
worker re-imports it and fails there) raise :class:`WorkerCrashed` with a hint about the guard.

Ray (``pip install 'dream-explorer[ray]'``): the executor joins the running Ray instance if there is one
(``ray.init`` done by the caller), else connects to ``ray_address`` (``"auto"``, ``"host:6379"``,
``"ray://host:10001"``) or starts a local instance, and shuts down only what it started. Checkpoints travel as
bytes in the payload, so cluster nodes need this package and its dependencies installed but no shared disk.
Before joining, the address is probed with a TCP connection that must open within
:data:`RAY_CONNECT_TIMEOUT_S` (Ray itself retries an unreachable address for minutes, deaf to Ctrl-C);
failing raises :class:`ClusterUnreachable`. A local instance started here runs in Ray's single-node mode, bound
to 127.0.0.1 (see :data:`RAY_MULTI_NODE_ENV`); to serve other machines, start a cluster with
``ray start --head`` and pass its address.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Generic, Literal, TypeVar

from core.errors import ConfigError, DreamExplorerError

ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = ("local", "ray")

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")
TaskFn = Callable[[Any, Any], Any]


class WorkerCrashed(DreamExplorerError):
    """A worker process died (killed, out of memory, segfault) while tasks were running."""


class TaskFailed(DreamExplorerError):
    """A task raised an exception inside its worker."""


class ClusterUnreachable(DreamExplorerError):
    """The Ray cluster at ``ray_address`` cannot be reached (nothing listens there, or no answer in time)."""


def _task_error(fn: TaskFn, index: int, exc: BaseException) -> DreamExplorerError:
    if isinstance(exc, DreamExplorerError):
        return exc
    text = str(exc).strip().splitlines()
    return TaskFailed(
        f"{fn.__name__} (task {index}) failed in a worker: {type(exc).__name__}: {text[0] if text else ''}"
    )


class Executor(ABC, Generic[S]):
    """Runs ``fn(shared, item)`` for many items on ``workers`` parallel workers.

    Use as a context manager; :meth:`close` stops the workers (and a Ray instance this executor started).

    Attributes:
        kind: ``"local"`` or ``"ray"``.
        workers: tasks running at once (local: processes; Ray: CPUs requested, one per task).
    """

    kind: str
    workers: int

    def map_unordered(
        self,
        fn: Callable[[S, T], R],
        items: Sequence[T],
        *,
        should_stop: threading.Event | None = None,
        abandon_on_stop: bool = False,
    ) -> Iterator[tuple[int, R]]:
        """Yield ``(index, fn(shared, items[index]))`` as tasks finish, at most ``2 * workers`` in flight.

        When ``should_stop`` is set no new task starts; tasks already running finish and are yielded, or with
        ``abandon_on_stop`` are abandoned (the iteration ends within half a second; call :meth:`terminate`
        next, which returns without waiting for them). If the caller stops iterating early, queued tasks are cancelled.

        Raises:
            WorkerCrashed: a worker process died. TaskFailed: a task raised (DreamExplorerErrors pass as-is).
        """
        queue = list(enumerate(items))
        queue.reverse()
        pending: dict[Any, int] = {}
        try:
            while queue or pending:
                while queue and len(pending) < 2 * self.workers and not (should_stop and should_stop.is_set()):
                    index, item = queue.pop()
                    pending[self._submit(fn, item)] = index
                if not pending:
                    return
                for handle in self._wait(list(pending), timeout=0.5):
                    index = pending.pop(handle)
                    yield index, self._result(fn, index, handle)
                if abandon_on_stop and should_stop is not None and should_stop.is_set():
                    return
        finally:
            for handle in pending:
                self._cancel(handle)

    @abstractmethod
    def _submit(self, fn: TaskFn, item: Any) -> Any: ...

    @abstractmethod
    def _wait(self, handles: list[Any], timeout: float) -> list[Any]: ...

    @abstractmethod
    def _result(self, fn: TaskFn, index: int, handle: Any) -> Any: ...

    @abstractmethod
    def _cancel(self, handle: Any) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Stop the workers."""

    def terminate(self) -> None:
        """Stop the workers now, dropping the tasks they run (default: :meth:`close`)."""
        self.close()

    def __enter__(self) -> Executor[S]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- local process pool -----------------------------------------------------------------------------------
_shared: Any = None
_abandon: Any = None
"""In a local worker: its executor's flag, set by :meth:`LocalExecutor.terminate` (see :func:`task_abandoned`)."""


def task_abandoned() -> bool:
    """Inside a task: whether its executor was terminated, so that a task whose result will be dropped (a real
    check of a stopped ``train-controller``) may end early instead of holding its process. False outside a local
    worker (in-process runs, Ray tasks)."""
    return _abandon is not None and _abandon.is_set()


PARENT_POLL_SECONDS = 1.0
"""How often a local worker checks that its parent is alive (where the kernel cannot tell it)."""


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its parent) ends, however it ends.

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon
    thread also polls the parent id and exits the process once the parent is gone (re-parented). A parent
    that died before this call is caught by the first check.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the polling thread below still applies
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_local_worker(shared: Any, parent_pid: int, started: Any, abandon: Any) -> None:
    global _shared, _abandon
    _abandon = abandon
    with started.get_lock():
        started.value += 1
    die_with_parent(parent_pid)
    for sig in (signal.SIGINT, signal.SIGHUP):  # a terminal's Ctrl-C or hang-up goes to the whole group
        signal.signal(sig, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)
    _shared = shared


def _run_local(fn: TaskFn, item: Any) -> Any:
    return fn(_shared, item)


class LocalExecutor(Executor[S]):
    """A pool of ``workers`` spawned processes on this machine; ``shared`` is pickled once per process.

    Spawned workers import the caller's main module; a script must therefore start the work under
    ``if __name__ == "__main__":``. Workers that all die before starting are reported with that hint.
    """

    kind = "local"

    def __init__(self, workers: int, shared: S) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        context = get_context("spawn")
        self._started = context.Value("i", 0)  # workers whose initializer ran (they got past importing __main__)
        self._abandon = context.Event()  # set by terminate(): tasks that check task_abandoned() end early
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_local_worker,
            initargs=(shared, os.getpid(), self._started, self._abandon),
        )

    def _submit(self, fn: TaskFn, item: Any) -> Future[Any]:
        try:
            return self._pool.submit(_run_local, fn, item)
        except BrokenProcessPool:
            raise WorkerCrashed(self._crash_message(fn)) from None

    def _wait(self, handles: list[Any], timeout: float) -> list[Any]:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def _result(self, fn: TaskFn, index: int, handle: Any) -> Any:
        try:
            return handle.result()
        except BrokenProcessPool:
            raise WorkerCrashed(self._crash_message(fn)) from None
        except Exception as exc:
            raise _task_error(fn, index, exc) from exc

    def _cancel(self, handle: Any) -> None:
        handle.cancel()

    def _crash_message(self, fn: TaskFn) -> str:
        if self._started.value == 0:
            main = getattr(sys.modules.get("__main__"), "__file__", None)
            script = f" ({main})" if main else ""
            return (
                f"the worker processes for {fn.__name__} died while starting, before running any task: a script"
                f'{script} that runs parallel work must start it under `if __name__ == "__main__":` (each '
                "spawned worker imports the script), or use workers=1"
            )
        return (
            f"a worker process died while running {fn.__name__} (killed, out of memory or crashed); "
            "the remaining tasks were abandoned"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def terminate(self) -> None:
        """Drop the queued tasks and return at once; the tasks already running finish in their workers (those
        that check :func:`task_abandoned` end early), which then exit (or die with this process, see
        :func:`die_with_parent`). The interpreter's exit waits for them. Killing the workers mid-task instead
        crashed this process now and then (a segmentation fault in about 1 of 3 test runs), so they are not
        killed."""
        self._abandon.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- Ray ----------------------------------------------------------------------------------------------------
RAY_MULTI_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch between multi-node mode (its default on Linux: a new instance advertises the machine's network
address and its servers listen on every interface) and single-node mode ("0": 127.0.0.1 only). A local
instance started by :class:`RayExecutor` sets "0" unless the variable is set already (read when Ray is first
imported; its own processes inherit it)."""

RAY_CONNECT_TIMEOUT_S = 10.0
"""Seconds a Ray cluster's address has to accept a TCP connection before joining it fails."""


def probe_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Check that a TCP connection to a Ray address opens within ``timeout`` seconds (and close it).

    ``address`` is ``"host:port"``, ``"ray://host:port"`` or ``"auto"`` (probed when the ``RAY_ADDRESS``
    environment variable names the cluster; else Ray finds the local instance itself, or fails at once).

    Raises:
        ConfigError: ``address`` is not of those forms.
        ClusterUnreachable: the connection was refused, failed, or did not open within ``timeout`` seconds.
    """
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    if not target or target in ("auto", "local"):
        return
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")  # an IPv6 literal
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address must be auto, host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except TimeoutError:
        raise ClusterUnreachable(f"no Ray cluster answered at --ray-address {address} within {timeout:g} s") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterUnreachable(
            f"cannot reach a Ray cluster at --ray-address {address} ({reason}); start one with `ray start --head` "
            "or leave --ray-address out to start a local one"
        ) from None


def _run_ray(fn: TaskFn, shared: Any, item: Any) -> Any:
    import torch

    torch.set_num_threads(1)
    return fn(shared, item)


class RayExecutor(Executor[S]):
    """Tasks on a Ray cluster, one CPU each; ``shared`` goes to the object store once (``ray.put``)."""

    kind = "ray"

    def __init__(self, workers: int, shared: S, address: str | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if address is None:  # a local instance: Ray's single-node mode advertises and listens on 127.0.0.1 only
            os.environ.setdefault(RAY_MULTI_NODE_ENV, "0")
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'dream-explorer[ray]'") from None
        self._ray = ray
        self.workers = workers
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            # log_to_driver=False keeps worker output off stdout (``evaluate --json`` prints one object there)
            if address is None:
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                probe_ray_address(address)
                try:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as exc:
                    first = str(exc).strip().splitlines()
                    raise ClusterUnreachable(
                        f"cannot join the Ray cluster at --ray-address {address}: {first[0] if first else type(exc).__name__}"
                    ) from None
        self._shared_ref = ray.put(shared)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_run_ray)

    def _submit(self, fn: TaskFn, item: Any) -> Any:
        return self._remote.remote(fn, self._shared_ref, item)

    def _wait(self, handles: list[Any], timeout: float) -> list[Any]:
        ready, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        return list(ready)

    def _result(self, fn: TaskFn, index: int, handle: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(handle)
        except exceptions.RayTaskError as exc:
            raise _task_error(fn, index, exc.cause if exc.cause is not None else exc) from None
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError,
                exceptions.OutOfMemoryError, exceptions.LocalRayletDiedError) as exc:  # fmt: skip
            first = str(exc).strip().splitlines()
            raise WorkerCrashed(
                f"a Ray worker died while running {fn.__name__} (task {index}): {first[0] if first else type(exc).__name__}"
            ) from None

    def _cancel(self, handle: Any) -> None:
        self._ray.cancel(handle)

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(kind: str, workers: int, shared: S, ray_address: str | None = None) -> Executor[S]:
    """An executor of ``kind`` (``"local"`` process pool or ``"ray"``) whose workers all see ``shared``.

    Raises:
        ConfigError: unknown kind, ``workers`` < 1, a malformed ``ray_address``, or Ray asked for but not installed.
        ClusterUnreachable: ``ray_address`` did not answer within :data:`RAY_CONNECT_TIMEOUT_S` seconds.
    """
    if kind == "local":
        return LocalExecutor(workers, shared)
    if kind == "ray":
        return RayExecutor(workers, shared, ray_address)
    raise ConfigError(f"executor must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")
