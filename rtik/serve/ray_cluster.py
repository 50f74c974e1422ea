"""Ray, the distributed engine rtik scales out on: joining a cluster, and a pool of workers for offline jobs.

``connect(None)`` starts a private local cluster that listens on 127.0.0.1 only: Ray's single-machine mode
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes the node's address the loopback one, and every Ray process binds
its gRPC servers to it), no dashboard, usage statistics off (``RAY_USAGE_STATS_ENABLED=0``). ``connect(ADDRESS)``
joins an existing cluster (``ray start --head`` elsewhere) whose own settings then apply; every node needs rtik
installed in the same version. docs/scale.md has what Ray listens on and the measured costs.

``map_items`` runs ``fn(context, item)`` for every item on a pool of worker actors, each of which builds its
``context`` once with ``setup()`` (a solver, say) and handles one item at a time, so an item (a clip) is done in
order inside one worker. ``ray`` is imported inside the functions: the runtime install does not need it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable

from rtik.errors import RtikError, TransportError

#: the environment of a private local cluster (set before Ray is imported: Ray reads them at import)
LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOCAL = "local"  # the address that asks for a private local cluster
INSTALL_HINT = "Ray is not installed: pip install 'rtik[ray]'"


def available() -> bool:
    """True when Ray can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def _ray():
    if not available():
        raise RtikError(INSTALL_HINT)
    import ray

    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """Join the Ray cluster at ``address`` (``host:port`` or ``ray://host:port``), or start a private local one
    (``None`` or ``"local"``) with ``num_cpus`` logical CPUs (default: this machine's). Does nothing when this
    process is already connected. Returns the ``ray`` module."""
    local = address in (None, "", LOCAL)
    if local:
        for k, v in LOCAL_ENV.items():
            os.environ.setdefault(k, v)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _ray()
    if ray.is_initialized():
        return ray
    kw = {"include_dashboard": False, "num_cpus": num_cpus or os.cpu_count()} if local else {}
    try:
        ray.init(address=LOCAL if local else address, log_to_driver=False, logging_level="warning", **kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = "a local Ray cluster" if local else f"the Ray cluster at {address!r}"
        raise TransportError(f"cannot start or join {where}: {e}") from e
    return ray


def shutdown() -> None:
    """Leave the cluster (and stop a private local one)."""
    if available():
        import ray

        ray.shutdown()


def node_address() -> str:
    """The address this process's Ray node advertises (127.0.0.1 for a private local cluster)."""
    ray = _ray()
    return ray.util.get_node_ip_address()


def cluster_cpus() -> int:
    """Logical CPUs of the connected cluster."""
    return int(_ray().cluster_resources().get("CPU", 1))


class _Worker:
    """A pool worker: builds its context once, then runs items one at a time."""

    def __init__(self, setup: Callable[[], object]):
        self.context = setup()

    def run(self, fn: Callable, item):
        return fn(self.context, item)


def map_items(
    setup: Callable[[], object],
    fn: Callable,
    items: Iterable,
    workers: int,
    on_done: Callable[[int, object], None] | None = None,
) -> list:
    """``[fn(context, item) for item in items]`` on ``workers`` worker actors of the connected cluster (one CPU
    each), each item handled whole by one worker; ``on_done(index, result)`` is called in completion order (a
    progress bar). ``setup`` and ``fn`` must be importable functions (or partials of them): they are pickled by
    reference. An exception raised by ``fn`` is raised here (as the original type where Ray can)."""
    ray = _ray()
    if workers < 1:
        raise RtikError(f"workers must be at least 1, got {workers}")
    todo = enumerate(items)  # consumed as workers free up: an item (a file's bytes) is read when it is due
    first = [x for _, x in zip(range(workers), todo, strict=False)]
    if not first:
        return []
    remote = ray.remote(num_cpus=1)(_Worker)
    pool = [remote.remote(setup) for _ in first]
    out: dict = {}
    running: dict = {}

    def submit(actor, nxt=None) -> None:
        nxt = nxt or next(todo, None)
        if nxt is not None:
            running[actor.run.remote(fn, nxt[1])] = (nxt[0], actor)

    try:
        for actor, nxt in zip(pool, first, strict=True):
            submit(actor, nxt)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(done[0])
            try:
                out[index] = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                cause = e.as_instanceof_cause()
                raise cause from None
            if on_done is not None:
                on_done(index, out[index])
            submit(actor)
    finally:
        for actor in pool:
            ray.kill(actor)
    return [out[i] for i in range(len(out))]
