"""Live preview of an rtik stream in Blender: one empty per joint, rotations from the daemon's pose feed.

Run from Blender's text editor (needs pyzmq, msgpack and numpy in Blender's Python; see README.md). Does not
import rtik: it speaks the wire protocol directly (docs/protocol.md).
"""

import math

import bpy
import msgpack
import numpy as np
import zmq

STREAM = "actor1"
FEED = "tcp://127.0.0.1:7701"
CONTROL = "tcp://127.0.0.1:7702"
COLLECTION = "rtik"
PERIOD = 1 / 60  # seconds between updates

_state = {}


def _skeleton(ctx):
    ctl = ctx.socket(zmq.DEALER)
    ctl.setsockopt(zmq.LINGER, 0)
    ctl.connect(CONTROL)
    ctl.send_multipart([b"", msgpack.packb({"v": 1, "cmd": "skeleton"})])
    if not ctl.poll(3000):
        raise RuntimeError(f"no rtik daemon answered at {CONTROL}")
    reply = msgpack.unpackb(ctl.recv_multipart()[-1])
    ctl.close()
    if not reply["ok"]:
        raise RuntimeError(reply["error"])
    return reply["result"]["skeleton"]


def _build(skel):
    """Empties parented like the skeleton; the top one turns rtik's Y-up into Blender's Z-up."""
    coll = bpy.data.collections.get(COLLECTION) or bpy.data.collections.new(COLLECTION)
    if coll.name not in bpy.context.scene.collection.children:
        bpy.context.scene.collection.children.link(coll)
    top = bpy.data.objects.get("rtik_yup") or bpy.data.objects.new("rtik_yup", None)
    if top.name not in coll.objects:
        coll.objects.link(top)
    top.rotation_euler = (math.pi / 2, 0.0, 0.0)  # Y up -> Z up
    empties = []
    for j, name in enumerate(skel["names"]):
        ob = bpy.data.objects.get(f"rtik_{name}") or bpy.data.objects.new(f"rtik_{name}", None)
        if ob.name not in coll.objects:
            coll.objects.link(ob)
        ob.empty_display_type = "ARROWS"
        ob.empty_display_size = 0.05
        parent = skel["parents"][j]
        ob.parent = top if parent < 0 else empties[parent]
        ob.location = skel["offsets"][j]
        ob.rotation_mode = "QUATERNION"
        empties.append(ob)
    return empties


def _update():
    sub, empties, motion_root = _state["sub"], _state["empties"], _state["motion_root"]
    latest = None
    while sub.poll(0):
        topic, payload = sub.recv_multipart()
        latest = payload
    if latest is not None:
        msg = msgpack.unpackb(latest)
        q = np.frombuffer(msg["quats"], "<f4").reshape(msg["n"], 4)
        for ob, (x, y, z, w) in zip(empties, q, strict=True):
            ob.rotation_quaternion = (w, x, y, z)  # Blender is scalar-first
        empties[motion_root].location = np.frombuffer(msg["root"], "<f4").tolist()
    return PERIOD


def stop():
    if bpy.app.timers.is_registered(_update):
        bpy.app.timers.unregister(_update)
    if "sub" in _state:
        _state.pop("sub").close()


def start():
    stop()
    ctx = zmq.Context.instance()
    skel = _skeleton(ctx)
    parents = skel["parents"]
    # the motion root carries the translation: the dummy root's only child, else the root
    kids = [j for j, p in enumerate(parents) if p == 0]
    motion_root = kids[0] if len(kids) == 1 and not any(skel["offsets"][0]) else 0
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, STREAM.encode())
    sub.connect(FEED)
    _state.update(sub=sub, empties=_build(skel), motion_root=motion_root)
    bpy.app.timers.register(_update, first_interval=PERIOD)


if __name__ == "__main__":
    start()
