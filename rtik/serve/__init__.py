"""The daemon ``rtik serve`` (imports :mod:`rtik.solve`, :mod:`rtik.wire` and below).

- :mod:`~rtik.serve.daemon`: :class:`Daemon`, its threads, the tick and the lifecycle;
- :mod:`~rtik.serve.config`: the TOML configuration (:class:`Config`);
- :mod:`~rtik.serve.receivers` and :mod:`~rtik.serve.ingest`: the receiving threads and the per-stream frame queues;
- :mod:`~rtik.serve.outputs`: a tick's poses published over ZeroMQ, OSC and VMC;
- :mod:`~rtik.serve.control`, :mod:`~rtik.serve.stats`, :mod:`~rtik.serve.security`: control commands, counters
  and Prometheus text, keys and limits;
- :mod:`~rtik.serve.recorder`: live BVH recording and recovery; :mod:`~rtik.serve.sdnotify`: systemd.
"""

from rtik.serve import config, control, daemon, ingest, outputs, receivers, recorder, sdnotify, security, stats
from rtik.serve.config import Config
from rtik.serve.daemon import Daemon

__all__ = [
    "Config",
    "Daemon",
    "config",
    "control",
    "daemon",
    "ingest",
    "outputs",
    "receivers",
    "recorder",
    "sdnotify",
    "security",
    "stats",
]
