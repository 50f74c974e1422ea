"""Index tables that tie the network to a skeleton: which joints the input has, which bones define each joint's
geometric frame, and which neighbours each joint sees in its own frame.

Every joint ``j`` of the input gets a *geometric frame* ``F_j`` built from positions alone (x = the direction of
its bone, y = a reference direction made orthogonal to it):

- a *determined* joint (Hips, Chest): x = its central child bone (up the body), y = its left-minus-right
  children — its whole rotation, fixed by the positions;
- any other joint: x = its bone (to its child; a leaf uses the bone from its parent), y = the normal of the
  bend it sits in (upper arm × forearm for the upper arm, forearm and hand; thigh × shank for the thigh, ...)
  blended with a body axis (the lateral or up axis of the nearest determined joint) so that the frame stays
  defined when the limb is straight. Which axis and with which sign is calibrated from data
  (:meth:`train.model.IKModel.calibrate`).

The twist of a hinge limb is largely fixed by its bend plane, so rotations predicted *relative to* ``F_j`` and
features expressed *in* ``F_j`` carry over between motions; that is the point of the design.

Tables are in input-joint index space (the skeleton's joints without its static dummy root, in skeleton order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.geometry.skeleton import DETERMINED, Skeleton

#: neighbours each joint sees in its frame: parent, child, grandchild (missing ones point at the joint itself)
NEIGHBOURS = ("parent", "child", "grandchild")


@dataclass(frozen=True, eq=False)
class Rig:
    """Index tables for one skeleton (all arrays int64 ``(Ji,)`` unless noted).

    Fields:
        input_joints: names of the input joints ``(Ji,)`` = skeleton joints minus the dummy root.
        skel_index: skeleton index of each input joint.
        dummy_root: skeleton index of the static dummy root, or -1.
        parent: input index of each joint's parent, -1 for the top joint (the motion root).
        a_from, a_to: the frame's x axis runs from ``a_from`` to ``a_to``.
        u_from, u_to, v_from, v_to: the bend normal is ``dir(u) × dir(v)``.
        lat_l, lat_r: the body's lateral axis near the joint runs from ``lat_r`` to ``lat_l``.
        up_from, up_to: the body's up axis near the joint.
        determined: ``(Ji,)`` bool, frame = (up, lateral) exactly.
        neighbours: ``(Ji, 3)`` input indices of parent, child, grandchild (self when missing).
    """

    input_joints: tuple[str, ...]
    skel_index: np.ndarray
    dummy_root: int
    parent: np.ndarray
    a_from: np.ndarray
    a_to: np.ndarray
    u_from: np.ndarray
    u_to: np.ndarray
    v_from: np.ndarray
    v_to: np.ndarray
    lat_l: np.ndarray
    lat_r: np.ndarray
    up_from: np.ndarray
    up_to: np.ndarray
    determined: np.ndarray
    neighbours: np.ndarray

    @property
    def num_inputs(self) -> int:
        return len(self.input_joints)


def _primary_child(skel: Skeleton, j: int, mirror: np.ndarray) -> int:
    kids = skel.bone_children(j)
    if not kids:
        return -1
    central = [c for c in kids if mirror[c] == c]
    return central[0] if central else kids[0]


def _tree_distance(skel: Skeleton) -> np.ndarray:
    J = len(skel)
    adj = [[] for _ in range(J)]
    for j in range(1, J):
        adj[j].append(int(skel.parents[j]))
        adj[int(skel.parents[j])].append(j)
    D = np.full((J, J), 10**6)
    for s in range(J):
        D[s, s] = 0
        todo = [s]
        while todo:
            k = todo.pop(0)
            for n in adj[k]:
                if D[s, n] > D[s, k] + 1:
                    D[s, n] = D[s, k] + 1
                    todo.append(n)
    return D


def build_rig(skel: Skeleton) -> Rig:
    """The index tables of ``skel`` (see the module doc)."""
    J = len(skel)
    dummy = skel.dummy_root()
    keep = [j for j in range(J) if j != dummy]
    to_in = {j: i for i, j in enumerate(keep)}
    mirror = skel.mirror_map()
    groups = skel.groups
    dist = _tree_distance(skel)
    det = [j for j in keep if groups[j] == DETERMINED]
    prim = {j: _primary_child(skel, j, mirror) for j in range(J)}

    def par(j: int) -> int:
        p = int(skel.parents[j])
        return -1 if p < 0 or p == dummy else p

    rows = {k: [] for k in ("a_from", "a_to", "u_from", "u_to", "v_from", "v_to", "lat_l", "lat_r", "up_from", "up_to")}
    parent, determined, neigh = [], [], []
    for j in keep:
        p, c = par(j), prim[j]
        g = prim[c] if c >= 0 else -1
        pp = par(p) if p >= 0 else -1
        a = (j, c) if c >= 0 else (p if p >= 0 else j, j)
        if c >= 0 and g >= 0:
            u, v = (j, c), (c, g)
        elif c >= 0:
            u, v = (p if p >= 0 else j, j), (j, c)
        else:
            u, v = (pp if pp >= 0 else p, p), (p, j)
        # nearest determined joint; ties go to the one further down the tree (Spine -> Chest)
        anchor = min(det, key=lambda d: (dist[j, d], -d)) if det else j
        pair = [k for k in skel.bone_children(anchor) if mirror[k] != k]
        lat = (pair[0], int(mirror[pair[0]])) if pair else (anchor, anchor)
        up = (anchor, prim[anchor]) if prim[anchor] >= 0 else (anchor, anchor)
        if groups[j] == DETERMINED:
            a = up
        for key, (f, t) in zip(("a", "u", "v", "up"), (a, u, v, up), strict=True):
            rows[f"{key}_from"].append(to_in[f])
            rows[f"{key}_to"].append(to_in[t])
        rows["lat_l"].append(to_in[lat[0]])
        rows["lat_r"].append(to_in[lat[1]])
        parent.append(to_in[p] if p >= 0 else -1)
        determined.append(groups[j] == DETERMINED)
        neigh.append([to_in[k] if k >= 0 else to_in[j] for k in (p, c, g)])
    arr = {k: np.asarray(v, dtype=np.int64) for k, v in rows.items()}
    return Rig(
        input_joints=tuple(skel.names[j] for j in keep),
        skel_index=np.asarray(keep, dtype=np.int64),
        dummy_root=-1 if dummy is None else int(dummy),
        parent=np.asarray(parent, dtype=np.int64),
        determined=np.asarray(determined, dtype=bool),
        neighbours=np.asarray(neigh, dtype=np.int64),
        **arr,
    )
