"""Write docs/results.md from `rtik eval` JSON files, optionally running the missing evaluations first.

Files in the runs folder (default runs/eval), one per split and kind:
    val-baselines.json, val-model.json                         split val
    content-run+wave-left-hand-baselines.json, ...-model.json  split content:run,wave-left-hand
    ablation-NAME-val.json, ablation-NAME-bench.json           an ablation's `rtik eval` on val and `rtik bench`

    python benchmarks/results.py                                   # tables from what exists
    python benchmarks/results.py --run --data ../shared/mocap/bandai-namco-motion-2.tar.xz   # baselines first
    python benchmarks/results.py --run --data ... --model runs/fold-run/pack --split content:run,wave-left-hand
    python benchmarks/results.py --run-corpus                      # the corpus section (benchmarks/results_corpus.py)

A model row appears only where a model JSON exists; everything else says that it awaits a model. It will not
overwrite a page that is not its own output (docs/results.md opens with sections written by hand from named JSON
files): give another --out, or --force.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_corpus  # noqa: E402

from rtik.eval.conditions import CONDITIONS  # noqa: E402
from rtik.eval.evaluation import CONTENTS, METHODS  # noqa: E402

COLUMNS = (
    ("mpjpe_mm", "MPJPE mm"),
    ("rot_all_deg", "rot °"),
    ("rot_determined_deg", "determined °"),
    ("rot_limb_deg", "limb °"),
    ("rot_leaf_deg", "leaf °"),
    ("grot_all_deg", "global °"),
    ("jerk_ratio", "jerk ×"),
    ("jerk_ratio_pooled", "pooled jerk ×"),
)
#: leave-content-out folds, each with a model trained without its contents: together they hold out every content
#: once (mirror pairs together, except the first: DESIGN's example, whose mirror wave-right-hand stayed in training)
FOLDS = (
    ("run", "wave-left-hand"),
    ("walk-turn-left", "walk-turn-right"),
    ("raise-up-left-hand", "raise-up-right-hand"),
    ("raise-up-both-hands", "walk"),
    ("wave-both-hands", "wave-right-hand"),
)
#: single contents: baselines only, in the overview (how hard each motion is for the classical solvers)
SINGLE = tuple((c,) for c in CONTENTS)
#: ablation runs (runs/abl-NAME) and what each changes against the reference
ABLATIONS = (
    ("gru128", "reference: GRU IK 2×128, denoiser 96, all losses"),
    ("ff8", "feed-forward IK (2 layers of 128) over the embeddings of the last 8 frames"),
    ("gru256", "GRU IK 2×256"),
    ("gru512", "GRU IK 2×512"),
    ("noden", "no denoiser (the IK network sees the input positions)"),
    ("nofk", "no FK position loss"),
)
BASELINES = METHODS[1:]
RTIK = "import sys; from rtik.cli import main; sys.exit(main())"  # the `rtik` command, whatever the PATH


def split_name(split: str) -> str:
    return "val" if split == "val" else "content-" + "+".join(sorted(split[len("content:") :].split(",")))


def splits(single: bool = False) -> list[str]:
    return ["val"] + ["content:" + ",".join(sorted(f)) for f in FOLDS + (SINGLE if single else ())]


def write_model_meta(split: str, runs: Path, model: str) -> None:
    """Record which pack a split's model JSON measures (name, creation time, path)."""
    from rtik.models import modelpack

    pack = modelpack.load(model)
    meta = {"name": pack.name, "created": pack.meta.get("created", ""), "path": str(model)}
    (runs / f"{split_name(split)}-model.meta.json").write_text(json.dumps(meta) + "\n")


def run_eval(split: str, data: str, runs: Path, model: str | None) -> None:
    kind = "model" if model else "baselines"
    out = runs / f"{split_name(split)}-{kind}.json"
    if out.is_file():
        return
    if model:
        write_model_meta(split, runs, model)
    cmd = [sys.executable, "-c", RTIK, "eval", "--data", data, "--split", split, "--json", str(out)]
    cmd += ["--methods", "model", "--model", model] if model else ["--methods", ",".join(BASELINES)]
    if split == "val":
        cmd += ["--png", str(out.with_suffix(".png"))]
    print(" ".join(cmd), file=sys.stderr, flush=True)
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(["nice", "-n", "10", *cmd], check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def load(runs: Path, split: str) -> tuple[dict, dict]:
    """(results {method: {condition: summary}}, info) merged from the split's JSON files."""
    merged: dict = {}
    for kind in ("model", "baselines"):
        f = runs / f"{split_name(split)}-{kind}.json"
        if f.is_file():
            merged.update(json.loads(f.read_text()))
    any_s = next((s for per in merged.values() for s in per.values()), None)
    info = {"clips": any_s["clips"], "frames": any_s["frames"]} if any_s else {}
    return merged, info


def table(results: dict) -> list[str]:
    lines = ["| condition | method | " + " | ".join(h for _, h in COLUMNS) + " |"]
    lines.append("|---|---|" + "---:|" * len(COLUMNS))
    for cond in CONDITIONS:
        for method in METHODS:
            s = results.get(method, {}).get(cond)
            if s is None:
                continue
            lines.append(f"| {cond} | {method} | " + " | ".join(_fmt(s.get(k)) for k, _ in COLUMNS) + " |")
    return lines


def verdict(results: dict) -> list[str]:
    """Per condition: the columns where the model beats the strongest baseline, ties it (within 1 % or 0.05) or
    loses. The jerk counts by its distance from 1 (as smooth as the real motion)."""
    lines = []
    for cond in CONDITIONS:
        m = results["model"].get(cond)
        base = [results[b][cond] for b in BASELINES if cond in results.get(b, {})]
        if m is None or not base:
            continue
        verdicts: dict[str, list[str]] = {"better": [], "tied": [], "worse": []}
        for key, head in COLUMNS[:-1]:  # the pooled jerk repeats the jerk column
            vals = [b[key] for b in base if b.get(key) is not None]
            if m.get(key) is None or not vals:
                continue
            score = (lambda v: abs(v - 1.0)) if key == "jerk_ratio" else (lambda v: v)
            best = min(score(v) for v in vals)
            diff, tol = score(m[key]) - best, max(0.01 * best, 0.05)
            verdicts["better" if diff < -tol else "tied" if diff <= tol else "worse"].append(head)
        parts = [f"{k} on {', '.join(v)}" for k, v in verdicts.items() if v]
        lines.append(f"- {cond}, model against the best baseline per column: " + "; ".join(parts))
    return lines


def overview(runs: Path) -> list[str]:
    """One row per split: the strongest baselines (and the model, where measured) on clean and noise10 input."""
    cols = [("analytic_prior", "clean"), ("analytic_prior", "noise10"), ("analytic_prior_oneeuro", "noise10")]
    cols += [("model", "clean"), ("model", "noise10")]
    head = " | ".join(f"{m} {c}" for m, c in cols)
    lines = [
        "Each cell: MPJPE mm / rot ° / jerk ×. The content folds train on the train split without those contents.",
        "",
        f"| split | clips | {head} |",
        "|---|---:|" + "---|" * len(cols),
    ]
    for split in splits(single=True):
        results, info = load(runs, split)
        if not results:
            continue
        cells = []
        for m, c in cols:
            s = results.get(m, {}).get(c)
            cells.append(
                "–" if s is None else " / ".join(_fmt(s[k]) for k in ("mpjpe_mm", "rot_all_deg", "jerk_ratio"))
            )
        lines.append(f"| {split} | {info['clips']} | " + " | ".join(cells) + " |")
    return lines


def training_run(pack_path: str) -> str:
    """``"N steps, M min"`` of the run that wrote a pack (``runs/NAME/pack``: its ``log.jsonl``), or ``"?"``."""
    log = (ROOT / pack_path).parent / "log.jsonl"
    if not log.is_file():
        return "?"
    last = json.loads(log.read_text().splitlines()[-1])
    return f"{last['step']:,} steps, {last['time'] / 60:.0f} min"


def _pair(m: dict | None, b: dict | None, key: str) -> str:
    return f"{_fmt(None if m is None else m.get(key))} / {_fmt(None if b is None else b.get(key))}"


def fold_tables(runs: Path) -> list[str]:
    """Per condition, every fold's model beside ``analytic_prior`` (the baseline of the same split), and the
    unweighted mean over the folds; only the conditions measured on as many folds as the best-covered one."""
    cols = [c for c in COLUMNS if c[0] != "jerk_ratio_pooled"]
    measured = [load(runs, "content:" + ",".join(sorted(f)))[0] for f in FOLDS]
    both = [set(r.get("model", {})) & set(r.get("analytic_prior", {})) for r in measured]
    max_folds = max(sum(cond in c for c in both) for cond in CONDITIONS)
    lines = []
    for cond in CONDITIONS:
        rows, sums = [], {}
        for fold in FOLDS:
            split = "content:" + ",".join(sorted(fold))
            results, info = load(runs, split)
            m, b = results.get("model", {}).get(cond), results.get("analytic_prior", {}).get(cond)
            if m is None or b is None:
                continue
            meta = json.loads((runs / f"{split_name(split)}-model.meta.json").read_text())
            cells = [_pair(m, b, k) for k, _ in cols]
            rows.append(f"| {', '.join(fold)} | {info['clips']} | {training_run(meta['path'])} | " + " | ".join(cells))
            for k, _ in cols:
                sums.setdefault(k, []).append((m[k], b[k]))
        n = len(rows)
        if n == 0 or n < max_folds:  # a mean over only some folds would not compare with the others
            continue
        mean = [f"{_fmt(sum(a for a, _ in v) / n)} / {_fmt(sum(b for _, b in v) / n)}" for v in sums.values()]
        lines += [f"**{cond}** (model / analytic_prior)", ""]
        head = "| held out | clips | model trained (steps, wall clock incl. pauses) | "
        lines.append(head + " | ".join(h for _, h in cols) + " |")
        lines.append("|---|---:|---|" + "---:|" * len(cols))
        lines += [r + " |" for r in rows]
        lines += [f"| **mean of {n} folds** | | | " + " | ".join(mean) + " |", ""]
    return lines


def ablation_table(runs: Path) -> list[str]:
    """The ablation runs on val (clean, noise10) with their latency from ``rtik bench`` (1 and 16 streams)."""
    head = (
        "| variant | state | trained | clean rot ° | clean limb ° | clean leaf ° | noise10 MPJPE mm | noise10 rot ° "
        "| noise10 jerk × | network µs 1 / 16 | solve µs 1 / 16 |"
    )
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    load_avg, passes = set(), (1, 0)
    for name, what in ABLATIONS:
        f = runs / f"ablation-{name}-val.json"
        if not f.is_file():
            continue
        res = json.loads(f.read_text())["model"]
        c, n = res.get("clean", {}), res.get("noise10", {})
        pack = f"runs/abl-{name}/pack"
        state = json.loads((ROOT / pack / "model.json").read_text())["state_size"]
        bench_f = runs / f"ablation-{name}-bench.json"
        net = solve = "–"
        if bench_f.is_file():
            bench = json.loads(bench_f.read_text())
            by = {r["streams"]: r for r in bench["results"]}
            net = " / ".join(f"{by[k]['backend_p50_us']:.0f}" for k in (1, 16) if k in by)
            solve = " / ".join(f"{by[k]['p50_us']:.0f}" for k in (1, 16) if k in by)
            load_avg.add(bench["load_avg"][0])
            passes = (bench.get("passes", 1), bench["frames"])
        cells = [c.get("rot_all_deg"), c.get("rot_limb_deg"), c.get("rot_leaf_deg"), n.get("mpjpe_mm")]
        cells += [n.get("rot_all_deg"), n.get("jerk_ratio")]
        lines.append(
            f"| `{name}`: {what} | {state} | {training_run(pack)} | " + " | ".join(_fmt(v) for v in cells)
            + f" | {net} | {solve} |"
        )  # fmt: skip
    if len(lines) == 2:
        return []
    if load_avg:
        lo, hi = min(load_avg), max(load_avg)
        lines += ["", f"Latency: p50 per tick over {passes[1]:,} ticks, the median of {passes[0]} passes, ONNX "
                  f"backend; 1-minute load average at the start of the benches {lo}–{hi}."]  # fmt: skip
    return lines


def render(runs: Path) -> str:
    out = [Path(__file__).with_name("results_intro.md").read_text().rstrip(), ""]
    out += [Path(__file__).with_name("results_default.md").read_text().rstrip(), ""]
    out += ["## Overview", "", *overview(runs), ""]
    folds = fold_tables(runs)
    if folds:
        out += ["## Leave-content-out folds", "", Path(__file__).with_name("results_folds.md").read_text().rstrip()]
        out += ["", *folds]
    out += results_corpus.section(runs)
    abl = ablation_table(runs)
    if abl:
        out += ["## Ablations", "", Path(__file__).with_name("results_ablations.md").read_text().rstrip(), ""]
        out += [*abl, ""]
    for split in splits():
        results, info = load(runs, split)
        title = "Validation split (take % 10 == 0)" if split == "val" else f"Leave-content-out: `{split}`"
        out += [f"## {title}", ""]
        if not results:
            out += ["Not measured yet.", ""]
            continue
        out.append(f"{info['clips']} clips, {info['frames']} frames: `rtik eval --data ARCHIVE --split {split}`.")
        meta_file = runs / f"{split_name(split)}-model.meta.json"
        if "model" in results and meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            out.append(f"Model: `{meta['name']}` (created {meta['created']}, `{meta['path']}`), ONNX backend.")
        if "model" not in results:
            held = "the default model" if split == "val" else "a model trained without these contents"
            out.append(f"**Model: not measured yet (awaiting {held})** — baselines only.")
        out += ["", *table(results), ""]
        if "model" in results:
            out += [*verdict(results), ""]
    return "\n".join(out) + "\n"


def generated(text: str) -> bool:
    """Whether ``text`` is what :func:`render` writes: it starts with the intro's first paragraph."""
    intro = Path(__file__).with_name("results_intro.md").read_text().strip().split("\n\n")[:2]
    return text.strip().startswith("\n\n".join(intro))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "eval"), help="folder of eval JSON files")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="markdown file to write")
    ap.add_argument("--run", action="store_true", help="run the missing evaluations first (niced, sequential)")
    ap.add_argument("--data", default=None, help="mocap archive, for --run")
    ap.add_argument("--model", default=None, help="model pack, for --run: evaluate the model instead of baselines")
    ap.add_argument("--split", action="append", default=None, help="with --run: only these splits (repeatable)")
    ap.add_argument("--note-model", action="store_true", help="only record --model as the pack of each --split")
    ap.add_argument(
        "--run-corpus", action="store_true", help="run the missing corpus evaluations first (--model: the pack)"
    )
    ap.add_argument("--force", action="store_true", help="overwrite --out even where it holds hand-written sections")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.is_file() and not args.force and not generated(out.read_text()):
        ap.error(
            f"{out} is not this script's output (it holds sections written by hand from named JSON files) and would "
            "lose them: write elsewhere with --out FILE, or pass --force"
        )
    runs = Path(args.runs)
    if args.note_model:
        for split in args.split or []:
            write_model_meta(split, runs, args.model)
    if args.run_corpus:
        results_corpus.run(runs, args.model)
    if args.run:
        if not args.data:
            ap.error("--run needs --data")
        runs.mkdir(parents=True, exist_ok=True)
        for split in args.split or splits():
            run_eval(split, args.data, runs, args.model)
    out.write_text(render(runs))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
