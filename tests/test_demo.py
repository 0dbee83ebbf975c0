"""`volfast demo` runs its stages for real and its surface figures agree with the generator's truth."""

from __future__ import annotations

import dataclasses
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
    import json

    def counts() -> dict[str, int]:  # the build's summary file, not the console text
        c: dict[str, int] = json.loads((tmp_path / "build" / "build-summary.json").read_text())["counts"]
        return c

    assert counts() == {"ok": 2, "skipped": 0, "invalid": 0, "failed": 0}
    # a second run reuses both days and reports the same figures
    assert surfaces_demo(Console(file=io.StringIO()), str(tmp_path), days=2, seed=3) == fig
    assert counts() == {"ok": 0, "skipped": 2, "invalid": 0, "failed": 0}


def test_reduced_demo_runs_every_stage_then_reuses_them(tmp_path: Path) -> None:
    import json
    import re

    from volfast.demo import DemoConfig, run_pipeline
    from volfast.report import RunLayout

    cfg = DemoConfig(days=40, seed=1, epochs=6, executor="serial", stress_steps=6, mc_scenarios=100)
    con = Console(file=io.StringIO(), width=160)
    report = run_pipeline(tmp_path, cfg, console=con)
    lay = RunLayout.of(tmp_path)
    assert report == lay.report / "report.html"
    assert lay.missing() == []  # every stage's output is there
    text = con.file.getvalue()  # type: ignore[attr-defined]
    assert ": reused" not in text and f"Report: {report.resolve()}" in text.replace("\n", "")
    html = report.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 8 and "data:image/gif;base64," in html
    assert (lay.data / "truth").is_dir() and (lay.models / "metrics.json").is_file()
    state = json.loads((tmp_path / "demo-state.json").read_text())
    stage_dirs = {
        "train pca": lay.model("pca"), "train vae": lay.model("vae"), "train cvae": lay.model("cvae"),
        "train lstm": lay.model("lstm"), "evaluate": lay.models, "stress": lay.stress, "hedge": lay.hedge,
        "backtest": lay.backtest, "report": lay.report,
    }  # fmt: skip
    for name, folder in stage_dirs.items():  # each stage recorded under the one freshness rule
        m = json.loads((folder / "_manifest.json").read_text())
        assert (m["stage"], m["status"]) == (name, "complete"), (name, m)
        assert m["recomputed_because"].startswith("no manifest"), (name, m["recomputed_because"])
    files = (report, lay.model("cvae") / "model.pt", lay.hedge / "hedge.json")
    files += tuple(d / "_manifest.json" for d in stage_dirs.values())
    stamp = {p: p.stat().st_mtime_ns for p in files}
    # a second run reuses every stage: nothing is rewritten, not even a manifest
    run_pipeline(tmp_path, cfg, console=Console(file=io.StringIO(), width=160))
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert json.loads((tmp_path / "demo-state.json").read_text()) == state
    # a changed setting redoes the stages that depend on it, and only those, saying why
    run_pipeline(tmp_path, dataclasses.replace(cfg, stress_steps=4), console=Console(file=io.StringIO()))
    for name in ("train cvae", "train lstm", "hedge", "backtest", "evaluate"):
        assert stage_dirs[name].joinpath("_manifest.json").stat().st_mtime_ns == stamp[
            stage_dirs[name] / "_manifest.json"
        ], name
    why = {n: json.loads((d / "_manifest.json").read_text()) for n, d in stage_dirs.items()}
    why = {n: m["recomputed_because"] for n, m in why.items()}
    assert why["stress"] == "settings changed: stress.steps 6 -> 4", why["stress"]
    assert why["report"].startswith("input stress/stress.json changed"), why["report"]
    assert json.loads((lay.stress / "stress.json").read_text())["config"]["steps"] == 4


def test_demo_data_folder_without_dbn_files_is_a_clear_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from volfast.cli import main

    empty = tmp_path / "dbn"
    empty.mkdir()
    args = ["demo", "--quotes", "2000", "--data", str(empty), "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert str(empty) in r.output


def test_ctrl_c_during_the_demo_build_is_not_reused(tmp_path: Path, monkeypatch) -> None:
    """Issue 14: Ctrl-C during the demo's build left a partial build that every later demo reused, then
    failed forever with "6 valid days". The interrupted build is never recorded as done; the next demo
    runs the build again (which resumes from its per-day manifests)."""
    import json

    import pytest

    import volfast.pipeline as pipeline
    from volfast.demo import DemoConfig, DemoError, run_pipeline
    from volfast.pipeline.summary import BuildSummary

    calls: list[bool] = []
    real = pipeline.run_build

    def interrupted(data, out, **kw):  # what run_build returns when Ctrl-C stops it
        calls.append(True)
        real(data, out, dates=None, **{**kw, "progress": False}, end=None, start=None)
        return BuildSummary(results=[], command=[], interrupted=True, not_run=["2024-01-05"])

    monkeypatch.setattr(pipeline, "run_build", interrupted)
    cfg = DemoConfig(days=2, seed=1, epochs=1, executor="serial")
    con = Console(file=io.StringIO(), width=160)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path, cfg, console=con)
    state = json.loads((tmp_path / "demo-state.json").read_text())
    assert "data" in state and "build" not in state
    monkeypatch.setattr(pipeline, "run_build", real)
    con2 = Console(file=io.StringIO(), width=160)
    with pytest.raises(DemoError, match="valid days; the world model needs at least 10"):
        run_pipeline(tmp_path, cfg, console=con2)  # the build ran again: its days are complete now
    summary = json.loads((tmp_path / "build" / "build-summary.json").read_text())
    assert summary["interrupted"] is False and summary["counts"]["failed"] == 0
    assert len(calls) == 1


def test_demo_rejects_negative_days(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from volfast.cli import main

    r = CliRunner().invoke(main, ["demo", "--days", "-1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output.startswith("Error: days must be >= 0"), r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()


def test_demo_stage_keys_follow_the_code_identity(monkeypatch) -> None:
    """Issue 14: the demo fingerprinted only its own settings, so a new volfast reused old models."""
    from volfast.demo import DemoConfig
    from volfast.io import freshness

    cfg = DemoConfig(days=40, seed=1)
    before = cfg.fingerprint("train cvae", "k", "epochs")
    assert cfg.fingerprint("train cvae", "k", "epochs") == before
    other = dict(freshness.code_identity(), core_sha256="0" * 64)
    monkeypatch.setattr(freshness, "code_identity", lambda: other)
    assert cfg.fingerprint("train cvae", "k", "epochs") != before
