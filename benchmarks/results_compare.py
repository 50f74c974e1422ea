"""Side-by-side tables of corpus evaluations (`rtik eval ... --json`): several models and baselines per part and
condition, in markdown, for docs/results.md.

    python benchmarks/results_compare.py \\
        --row "body model=runs/eval2/body-val.json:model" --row "shipped=runs/eval2/shipped-val.json:model" \\
        --row "analytic_prior=runs/eval2/body-val.json:analytic_prior" [--conditions clean,noise10]

Each cell: the value of that evaluation's summary (``rot`` columns with the per-source rest offset fitted).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = (
    ("MPJPE mm", "mpjpe_mm"),
    ("rot °", "rot_fit_all_deg"),
    ("determ °", "rot_fit_determined_deg"),
    ("limb °", "rot_fit_limb_deg"),
    ("leaf °", "rot_fit_leaf_deg"),
    ("global °", "grot_fit_all_deg"),
    ("raw rot °", "rot_all_deg"),
    ("jerk ×", "jerk_ratio"),
)


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def table(rows: list[tuple[str, dict, str]], conditions) -> list[str]:
    """Markdown lines: one table per part (source), rows = (label, evaluation JSON, method) x condition."""
    parts = []
    for _, doc, _ in rows:
        for p in doc["parts"]:
            if p not in parts:
                parts.append(p)
    out = []
    for part in parts:
        out += [f"**{part}**", "", "| condition | method | " + " | ".join(c for c, _ in COLUMNS) + " |"]
        out.append("|---|---|" + "---:|" * len(COLUMNS))
        for cond in conditions:
            for label, doc, method in rows:
                cell = doc["parts"].get(part, {}).get(method, {}).get(cond)
                if cell is None:
                    continue
                out.append(f"| {cond} | {label} | " + " | ".join(_fmt(cell.get(k)) for _, k in COLUMNS) + " |")
        out.append("")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", action="append", required=True, help="LABEL=PATH.json:METHOD (repeat)")
    ap.add_argument("--conditions", default="clean,noise10")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.row:
        label, rest = spec.split("=", 1)
        path, method = rest.rsplit(":", 1)
        rows.append((label, json.loads(Path(path).read_text()), method))
    print("\n".join(table(rows, [c for c in args.conditions.split(",") if c])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
