"""benchmarks/results.py never overwrites a results page that holds sections written by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import results  # noqa: E402


def test_a_hand_written_page_is_kept_unless_forced(tmp_path, capsys):
    page = tmp_path / "results.md"
    page.write_text("# Accuracy results\n\nWritten by hand from runs/eval11/gap-val.json.\n")
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(SystemExit):
        results.main(["--runs", str(runs), "--out", str(page)])
    assert "would lose them" in capsys.readouterr().err
    assert page.read_text().startswith("# Accuracy results\n\nWritten by hand")
    results.main(["--runs", str(runs), "--out", str(page), "--force"])
    assert results.generated(page.read_text())
    results.main(["--runs", str(runs), "--out", str(page)])  # its own output: rewritten without --force
    shipped = ROOT / "docs" / "results.md"
    assert not results.generated(shipped.read_text())  # so the script's default --out is refused too
