"""Where the daemon's solved poses go: the ZeroMQ feed (PUB), OSC ``/rtik/pose`` and the VMC protocol.

A tick's poses are encoded first and then sent back to back: consecutive sends let ZeroMQ's I/O thread wake once
per tick instead of once per pose (half the publish time at 16 streams). A receiver that is not running never
disturbs the daemon: UDP sends that fail are counted, PUB drops at its high-water mark.
"""

from __future__ import annotations

import numpy as np
import zmq

from rtik.geometry.kinematics import forward_kinematics
from rtik.geometry.skeleton import Skeleton
from rtik.serve.config import Config
from rtik.wire import osc, protocol
from rtik.wire.vmc import VmcRig, VmcSender
from rtik.wire.zmq import PosePublisher


def make_pose(res, frame: protocol.Frame | None, recv: float, pub: float) -> protocol.Pose:
    """The wire pose of a solver result (``rtik.solve.solver.SolveResult``) for the frame that produced it."""
    return protocol.Pose(
        res.stream,
        frame.seq if frame is not None else int(res.seq),  # the source's numbering, not the solver's frame count
        float(res.timestamp),
        frame.sent if frame is not None else 0.0,
        recv,
        pub,
        float(res.solve_us),
        bool(res.reset),
        np.asarray(res.root_pos, dtype=np.float32),
        np.asarray(res.local_quats, dtype=np.float32),
    )


class Outputs:
    """The enabled outputs of a config. ``open`` binds them; ``send`` delivers one tick's poses."""

    def __init__(self, cfg: Config, skeleton: Skeleton):
        self.cfg = cfg
        self.skeleton = skeleton
        self.publisher: PosePublisher | None = None
        self.osc: osc.UdpSender | None = None
        self.vmc: VmcSender | None = None
        self.vmc_stream = cfg.vmc.stream  # "" until the first stream opens (unless configured)

    def open(self, ctx: zmq.Context, prior_local=None, options: dict | None = None) -> None:
        """Bind the PUB socket and open the UDP senders; ``prior_local`` is the model's mean pose (VMC twist)."""
        cfg = self.cfg
        if cfg.zmq_out.enabled:
            self.publisher = PosePublisher(ctx, cfg.zmq_out.bind, cfg.zmq_out.hwm, options)
        if cfg.osc_out.enabled:
            self.osc = osc.UdpSender(cfg.osc_out.host, cfg.osc_out.port)
        if cfg.vmc.enabled:
            rig = VmcRig(self.skeleton, cfg.vmc.bones or None, prior_local)
            self.vmc = VmcSender(rig, cfg.vmc.host, cfg.vmc.port, cfg.vmc.bundle)

    def stream_opened(self, name: str) -> None:
        if not self.vmc_stream:
            self.vmc_stream = name

    def stream_closed(self, name: str) -> None:
        if not self.cfg.vmc.stream and self.vmc_stream == name:
            self.vmc_stream = ""  # the avatar follows the next stream that opens

    def send(self, poses: list, results: dict) -> None:
        """Deliver ``poses`` (``protocol.Pose``); ``results`` (stream -> solver result) supply the VMC positions."""
        if self.publisher is not None:
            for msg in [(p.stream, protocol.encode_pose(p)) for p in poses]:
                self.publisher.publish(*msg)
        if self.osc is not None:
            for dgram in [osc.encode_pose(p) for p in poses]:
                self.osc.send(dgram)
        if self.vmc is not None and self.vmc_stream in results:
            p = next(p for p in poses if p.stream == self.vmc_stream)
            positions = getattr(results[p.stream], "positions", None)
            if positions is None:
                positions = forward_kinematics(self.skeleton, p.local_quats[None].astype(np.float64),
                                               p.root_pos[None])[0][0]  # fmt: skip
            self.vmc.send(p.local_quats, positions, p.timestamp)

    def publish_skeleton(self, payload: bytes) -> None:
        if self.publisher is not None:
            self.publisher.publish(protocol.SKELETON_TOPIC, payload)

    def close(self) -> None:
        for out in (self.publisher, self.osc, self.vmc):
            if out is not None:
                out.close()
        self.publisher = self.osc = self.vmc = None
