"""The wire: what goes over the network and how (imports :mod:`rtik.geometry` only; knows no solver).

- :mod:`~rtik.wire.protocol`: the message schema (:class:`Frame` in, :class:`Pose` out, skeleton, control
  commands), msgpack-encoded and checked on decode;
- :mod:`~rtik.wire.zmq`, :mod:`~rtik.wire.osc`, :mod:`~rtik.wire.vmc`: one module per transport or format
  (ZeroMQ sockets, OSC over UDP, the VMC protocol for avatars);
- :mod:`~rtik.wire.client`: the client library (:class:`Sender`, :class:`Listener`, :class:`Control`).
"""

from rtik.wire import client, osc, protocol, vmc, zmq
from rtik.wire.client import Control, Listener, Sender
from rtik.wire.protocol import Frame, Pose

__all__ = ["Control", "Frame", "Listener", "Pose", "Sender", "client", "osc", "protocol", "vmc", "zmq"]
