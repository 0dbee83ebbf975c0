"""`volfast demo` runs its stages for real and its surface figures agree with the generator's truth."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from volfast.demo import surfaces_demo


def test_surfaces_demo_against_truth_and_reuse(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    fig = surfaces_demo(console, str(tmp_path), days=2, seed=3)
    # the forward bars are 0.2 / 1 bp (median / 95th); the fitted smiles sit on the true ones
    assert fig["forward_err_median_bp"] <= 0.3 and fig["forward_err_p95_bp"] <= 1.5
    assert fig["fit_vs_truth_rmse_volpts"] < 0.1
    assert fig["inside_bid_ask"] > 0.9
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "2 built, 0 reused" in text
    # a second run reuses both days and reports the same figures
    console2 = Console(file=io.StringIO(), width=120)
    assert surfaces_demo(console2, str(tmp_path), days=2, seed=3) == fig
    assert "0 built, 2 reused" in console2.file.getvalue()  # type: ignore[attr-defined]
