"""Training smoke test: a few steps on sample clips lower the loss and write a checkpoint, log and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train import fit  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402


def test_twenty_steps_lower_the_loss(mocap, tmp_path):
    src = tmp_path / "bvh"
    src.mkdir()
    for p in sorted((mocap / "sample").glob("*.bvh"))[:2]:
        (src / p.name).symlink_to(p)
    out = tmp_path / "run"
    args = ["--data", str(src), "--out", str(out), "--steps", "20", "--minutes", "10", "--batch", "4",
            "--window", "16", "--workers", "0", "--hidden", "32", "--layers", "1", "--den-hidden", "16",
            "--lr", "3e-3", "--train-split", "all", "--augment", "none", "--no-export", "--no-progress"]  # fmt: skip
    assert fit.main(args) == 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["total"] for r in log if "total" in r]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert (out / "last.pt").is_file() and (out / "loss.png").is_file()
    assert any("val_local_mean" in r for r in log)
    model, meta = load_checkpoint(out / "last.pt")
    assert meta["training"]["command"].startswith("python -m train.fit") and "CC BY-NC 4.0" in meta["licence"]
    assert model.state_size == 16 + 32
