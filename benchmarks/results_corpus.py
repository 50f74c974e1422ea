"""The multi-source corpus section of docs/results.md: cross-rig `rtik eval` on every source's val part and on
whole sources a model never saw (leave-source-out), from the JSON files in the runs folder:

    corpus-val.json                      rtik eval --split val ...
    corpus-source-NAME.json              rtik eval --split source:NAME ...
    corpus-source-NAME-chain.json        the same, the model given the joints a rig lacks on their chain

`python benchmarks/results.py --run-corpus [--model PACK]` runs the missing ones (:data:`RUNS`) first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTIK = "import sys; from rtik.cli import main; sys.exit(main())"
CONDITIONS = ("clean", "noise10", "occlusion", "outliers")
#: (file stem, split, extra arguments): the runs behind the section (clips and frames drawn with seed 0)
RUNS = (
    ("corpus-val", "val", ["--limit", "8", "--max-frames", "300", "--methods", "model,analytic,analytic_prior"]),
    *(
        (f"corpus-source-{s}", f"source:{s}", ["--limit", "24", "--max-frames", "300",
                                               "--methods", "model,analytic,analytic_prior"])
        for s in ("snu-vsports", "mpi-poseprior", "animated-drawings")
    ),
    *(
        (f"corpus-source-{s}-chain", f"source:{s}", ["--limit", "24", "--max-frames", "300", "--methods", "model",
                                                     "--virtual", "chain", "--conditions", "clean,noise10"])
        for s in ("snu-vsports", "mpi-poseprior", "animated-drawings")
    ),
)  # fmt: skip
COLUMNS = (
    ("mpjpe_mm", "MPJPE mm"),
    ("rot_fit_all_deg", "rot °"),
    ("rot_fit_determined_deg", "determ °"),
    ("rot_fit_limb_deg", "limb °"),
    ("rot_fit_leaf_deg", "leaf °"),
    ("grot_fit_all_deg", "global °"),
    ("rot_all_deg", "raw rot °"),
    ("rot_determined_deg", "raw determ °"),
    ("rot_limb_deg", "raw limb °"),
    ("rot_leaf_deg", "raw leaf °"),
    ("grot_all_deg", "raw global °"),
    ("jerk_ratio", "jerk ×"),
)
METHODS = ("model", "model (chain)", "analytic", "analytic_prior")


def run(runs: Path, model: str | None) -> None:
    """Run the missing evaluations of :data:`RUNS` (niced, one after the other)."""
    runs.mkdir(parents=True, exist_ok=True)
    for stem, split, extra in RUNS:
        out = runs / f"{stem}.json"
        if out.is_file():
            continue
        cmd = [sys.executable, "-c", RTIK, "eval", "--split", split, *extra, "--json", str(out)]
        cmd += ["--model", model] if model else []
        if "--virtual" not in extra:
            cmd += ["--png", str(out.with_suffix(".png"))]
        print(" ".join(cmd), file=sys.stderr, flush=True)
        with open(out.with_suffix(".log"), "w") as log:
            subprocess.run(["nice", "-n", "10", *cmd], check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def _load(runs: Path, stem: str) -> dict | None:
    f = runs / f"{stem}.json"
    if not f.is_file():
        return None
    doc = json.loads(f.read_text())
    chain = runs / f"{stem}-chain.json"
    if chain.is_file():  # the model given the virtual joints on their chain, as its own method
        for part, per in json.loads(chain.read_text())["parts"].items():
            if "model" in per:
                doc["parts"].setdefault(part, {})["model (chain)"] = per["model"]
    return doc


def _rows(label: str, per: dict, cond: str) -> list[str]:
    out = []
    for m in METHODS:
        s = per.get(m, {}).get(cond)
        if s is not None:
            out.append(f"| {label} | {m} | " + " | ".join(_fmt(s.get(k)) for k, _ in COLUMNS) + " |")
    return out


def _head(first: str) -> list[str]:
    return [f"| {first} | method | " + " | ".join(h for _, h in COLUMNS) + " |", "|---|---|" + "---:|" * len(COLUMNS)]


def _about(doc: dict) -> str:
    model = doc.get("model") or {}
    parts = doc["parts"]
    any_s = next(s for per in parts[next(iter(parts))].values() for s in per.values())
    n = {p: next(iter(next(iter(per.values())).values()))["clips"] for p, per in parts.items() if p != "all"}
    clips = ", ".join(f"{p} {c}" for p, c in n.items())
    return (
        f"`rtik eval --split {doc['split']} --limit {doc['limit_per_source']} --max-frames {doc['max_frames']} "
        f"--seed {doc['seed']}` — clips: {clips}; up to {doc['max_frames']} frames each ({any_s['frames']:,} "
        f"frames{' in ' + str(len(n)) + ' sources' if len(n) > 1 else ''}). Model: `{model.get('name', '–')}` "
        f"(`{model.get('path', '–')}`), ONNX backend; analytic_prior's mean pose: {doc.get('prior')}; rest offsets "
        f"fitted per {doc.get('offsets', 'source')}."
    )


def section(runs: Path) -> list[str]:
    """The corpus section's lines (intro from results_corpus.md, then a table per split and condition)."""
    val = _load(runs, "corpus-val")
    lso = [(s, _load(runs, f"corpus-source-{s}")) for s in ("snu-vsports", "mpi-poseprior", "animated-drawings")]
    if val is None and not any(d for _, d in lso):
        return []
    out = [Path(__file__).with_name("results_corpus.md").read_text().rstrip(), ""]
    if val is not None:
        out += ["### Val part of every source", "", _about(val), ""]
        for cond in CONDITIONS:
            rows = [r for part, per in val["parts"].items() for r in _rows(part, per, cond)]
            if rows:
                out += [f"**{cond}**", "", *_head("source"), *rows, ""]
    for source, doc in lso:
        if doc is None:
            continue
        out += [f"### Leave-source-out: `{source}`", "", _about(doc), ""]
        rows = [r for cond in CONDITIONS for r in _rows(cond, doc["parts"][source], cond)]
        out += [*_head("condition"), *rows, ""]
    return out
