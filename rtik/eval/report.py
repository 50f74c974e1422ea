"""Reporting evaluation results: a text table, a JSON document and a PNG of per-joint errors.

Results are ``{method: {condition: Errors}}`` (:func:`rtik.eval.evaluation.evaluate`). The JSON is
``{method: {condition: {"mpjpe_mm", "rot_all_deg", "rot_determined_deg", "rot_limb_deg", "rot_leaf_deg",
"grot_all_deg", "jerk_ratio", "jerk_ratio_pooled", "frames", "clips"}}}``; ``nan`` becomes ``null``.

Corpus splits (:mod:`rtik.eval.crossrig`) have one more level, the *part* (a source, or ``all``): results
``{part: {method: {condition: RigErrors}}}``, JSON ``{"split": ..., "parts": {part: {method: {condition:
summary}}}, "joints": {"names": [...], "parts": ...}, ...}`` with the :data:`rtik.eval.crossrig.KEYS` figures and
the per-joint means (:func:`parts_to_json`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rtik.eval.metrics import Errors

#: column headers of the table: the :data:`rtik.eval.metrics.KEYS`, then the pooled jerk ratio
HEADERS = {
    "mpjpe_mm": "MPJPE mm",
    "rot_all_deg": "rot °",
    "rot_determined_deg": "determ °",
    "rot_limb_deg": "limb °",
    "rot_leaf_deg": "leaf °",
    "grot_all_deg": "global °",
    "jerk_ratio": "jerk ×",
    "jerk_ratio_pooled": "pooled jerk ×",
}


def _fmt(v: float, key: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2f}" if key.startswith("jerk") or abs(v) < 10 else f"{v:.1f}"


def summaries(results: dict[str, dict[str, Errors]]) -> dict[str, dict[str, dict]]:
    """``{method: {condition: summary dict}}`` (see :meth:`rtik.eval.metrics.Errors.summary`)."""
    return {m: {c: e.summary() for c, e in per.items()} for m, per in results.items()}


def table(results: dict[str, dict[str, Errors]]) -> str:
    """A plain-text table: one row per (method, condition), one column per metric."""
    rows = [["method", "condition", *HEADERS.values()]]
    for method, per in summaries(results).items():
        for cond, s in per.items():
            rows.append([method, cond, *(_fmt(s[k], k) for k in HEADERS)])
    return _rows_table(rows, 2)


#: column headers of the corpus table: MPJPE, rotation error with the fitted rest offset and without, jerk
PART_HEADERS = {
    "mpjpe_mm": "MPJPE mm",
    "rot_fit_all_deg": "fit rot °",
    "rot_fit_determined_deg": "determ",
    "rot_fit_limb_deg": "limb",
    "rot_fit_leaf_deg": "leaf",
    "grot_fit_all_deg": "fit global °",
    "rot_all_deg": "raw rot °",
    "rot_determined_deg": "determ",
    "rot_limb_deg": "limb",
    "rot_leaf_deg": "leaf",
    "grot_all_deg": "raw global °",
    "jerk_ratio": "jerk ×",
}


def _rows_table(rows: list[list[str]], left: int) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def part_table(results: dict) -> str:
    """A plain-text table of corpus results ``{part: {method: {condition: RigErrors}}}``: one row per (part,
    method, condition)."""
    rows = [["part", "method", "condition", *PART_HEADERS.values()]]
    for part, per in results.items():
        for method, by_cond in per.items():
            for cond, e in by_cond.items():
                s = e.summary()
                rows.append([part, method, cond, *(_fmt(s[k], k) for k in PART_HEADERS)])
    return _rows_table(rows, 3)


def parts_to_json(results: dict, joint_names=None, **meta) -> dict:
    """The JSON document of corpus results: ``meta`` fields, then ``"parts"``; with ``joint_names`` also
    ``"joints"``: ``{"names": [...], "parts": {part: {method: {condition: {field: [per joint]}}}}}``, the
    per-joint means of every :meth:`rtik.eval.crossrig.RigErrors.per_joint` field (``null`` where a joint was
    never scored)."""
    parts = {
        part: {m: {c: {k: _clean(v) for k, v in e.summary().items()} for c, e in per.items()} for m, per in pm.items()}
        for part, pm in results.items()
    }
    doc = {**meta, "parts": parts}
    if joint_names is not None:

        def joints(e):
            return {k: [_clean(round(float(x), 4)) for x in v] for k, v in e.per_joint().items()}

        doc["joints"] = {
            "names": list(joint_names),
            "parts": {
                part: {m: {c: joints(e) for c, e in per.items()} for m, per in pm.items()}
                for part, pm in results.items()
            },  # fmt: skip
        }
    return doc


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_json(results: dict[str, dict[str, Errors]]) -> dict:
    """The JSON-ready document (see the module docstring)."""
    return {
        m: {c: {k: _clean(v) for k, v in s.items()} for c, s in per.items()} for m, per in summaries(results).items()
    }


def write_json(results: dict[str, dict[str, Errors]], path) -> None:
    Path(path).write_text(json.dumps(to_json(results), indent=1) + "\n")


PANELS = (("rot_deg", "local rotation error (°)"), ("pos_mm", "position error (mm)"))


def write_png(results: dict[str, dict[str, Errors]], joint_names, path, panels=PANELS) -> bool:
    """Bar charts of per-joint errors, by default local rotation error (degrees) and position error (mm): one
    row per condition, one bar colour per method; ``panels``: ``((per_joint key, title), ...)``. Returns
    ``False`` (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    methods = list(results)
    conds = list(next(iter(results.values())))
    first = results[methods[0]][conds[0]]
    keep = np.nonzero(first.joints)[0]
    names = [joint_names[j] for j in keep]
    x = np.arange(len(keep))
    w = 0.8 / len(methods)
    fig, axes = plt.subplots(len(conds), len(panels), figsize=(8 * len(panels), 3.2 * len(conds)), squeeze=False)
    for r, cond in enumerate(conds):
        for c, (key, label) in enumerate(panels):
            ax = axes[r, c]
            for i, m in enumerate(methods):
                ax.bar(x + (i - (len(methods) - 1) / 2) * w, results[m][cond].per_joint()[key][keep], w, label=m)
            ax.set_title(f"{cond}: {label}", fontsize=10)
            ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
            ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
