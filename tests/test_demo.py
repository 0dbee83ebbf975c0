"""`volfast demo` runs its stages for real and its surface figures agree with the generator's truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from pathlib import Path
from typing import Any

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


def test_reduced_demo_runs_every_stage_then_reuses_them(demo_run: Path) -> None:
    """On the session's reduced demo run (conftest.demo_run, shared with test_report: the pipeline runs
    once); the changed setting below is put back at the end, so the run is as the fixture made it."""
    import json
    import re

    from tests.conftest import DEMO_RUN_SETTINGS
    from volfast.demo import DemoConfig, run_pipeline
    from volfast.report import RunLayout

    tmp_path = demo_run
    cfg = DemoConfig(**DEMO_RUN_SETTINGS)
    lay = RunLayout.of(tmp_path)
    report = lay.report / "report.html"
    assert lay.missing() == []  # every stage's output is there
    html = report.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 8 and "data:image/gif;base64," in html
    assert (lay.data / "truth").is_dir() and (lay.models / "metrics.json").is_file()
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
    assert run_pipeline(tmp_path, cfg, console=Console(file=io.StringIO(), width=160)) == report
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    try:
        _changed_setting_redoes_only_what_it_reaches(tmp_path, cfg, stage_dirs, stamp)
    finally:  # put the shared run back as it was (stress and report redone with the fixture's settings)
        run_pipeline(tmp_path, cfg, console=Console(file=io.StringIO()))
    why = json.loads((lay.stress / "_manifest.json").read_text())["recomputed_because"]
    assert why == "settings changed: stress.steps 4 -> 8", why
    assert json.loads((lay.stress / "stress.json").read_text())["config"]["steps"] == 8


def _changed_setting_redoes_only_what_it_reaches(
    tmp_path: Path, cfg: Any, stage_dirs: dict[str, Path], stamp: dict[Path, int]
) -> None:
    import json

    from volfast.demo import run_pipeline
    from volfast.report import RunLayout

    lay = RunLayout.of(tmp_path)
    # a changed setting redoes the stages that depend on it, and only those, saying why
    run_pipeline(tmp_path, dataclasses.replace(cfg, stress_steps=4), console=Console(file=io.StringIO()))
    for name in ("train cvae", "train lstm", "hedge", "backtest", "evaluate"):
        assert stage_dirs[name].joinpath("_manifest.json").stat().st_mtime_ns == stamp[
            stage_dirs[name] / "_manifest.json"
        ], name
    why = {n: json.loads((d / "_manifest.json").read_text()) for n, d in stage_dirs.items()}
    why = {n: m["recomputed_because"] for n, m in why.items()}
    assert why["stress"] == "settings changed: stress.steps 8 -> 4", why["stress"]
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
    data_manifest = json.loads((tmp_path / "data" / "_manifest.json").read_text())
    assert (data_manifest["stage"], data_manifest["status"]) == ("synth", "complete")
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


def test_demo_settings_reach_the_stages_own_dataclasses(tmp_path: Path) -> None:
    """Issue 14: the demo had its own settings beside the commands'; its tables now go into the same
    dataclasses (BuildConfig / SurfaceConfig, TrainConfig, StressConfig, HedgeConfig, BacktestConfig)."""
    from volfast.demo import load_demo_config
    from volfast.models.train import load_config
    from volfast.surface.day import SurfaceConfig

    toml = tmp_path / "demo.toml"
    toml.write_text(
        "[demo]\ndays = 40\nstart = 2024-02-01\n[surfaces]\narbitrage = \"off\"\n"
        "[stress]\nsteps = 9\n[hedge]\nfutures = 4.0\n"
    )
    sets = ["surfaces.arbitrage=check", "train.epochs=2", "snapshot.lookback=5m", "backtest.threshold=2.5"]
    cfg = load_demo_config(toml, [*sets, "energy.quantile=0.8", "seed=4"], executor="serial")
    assert (cfg.days, cfg.start, cfg.seed, cfg.executor) == (40, "2024-02-01", 4, "serial")
    b = cfg.build_config()
    assert SurfaceConfig.from_dict(b.surfaces_params()).arbitrage == "check"  # --set wins over the file
    assert (b.seed, b.snapshot.lookback, b.executor.kind) == (4, "5m", "serial")
    for kind in ("pca", "cvae", "lstm"):
        assert load_config(kind, None, cfg.train_overrides())[1].epochs == 2
    assert cfg.backtest_train_config().epochs == 2 and cfg.backtest_train_config().seed == 4
    st = cfg.stress_config()
    assert (st.steps, st.mc_scenarios, st.seed) == (9, cfg.mc_scenarios, 4)
    h, e = cfg.hedge_configs()
    assert (h.futures, e.quantile) == (4.0, 0.8)
    assert cfg.backtest_config(40).threshold == 2.5
    # the epochs cap and [train] together: [train] wins
    capped = load_demo_config(None, ["train.epochs=3"], epochs=7)
    assert load_config("vae", None, capped.train_overrides())[1].epochs == 3


def test_bad_demo_settings_are_usage_errors_before_anything_runs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from volfast.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[modle]\nlatent = 3\n")
    cases = {
        ("--set", "surfaces.arbitrage=sometimes"): "arbitrage",
        ("--set", "train.epochs=zero"): "epochs",
        ("--set", "stress.stpes=3"): "stpes",
        ("--set", "backtest.threshold=-1"): "threshold",
        ("--set", "dayz=3"): "dayz",
        ("--set", "nosuch.key=1"): "nosuch.key=1",
        ("--set", "snapshot.lookback=forever"): "lookback",
        ("--set", "start=2024-13-01"): "start",
        ("--config", str(bad)): "modle",
    }
    for args, key in cases.items():
        out = tmp_path / "o"
        r = CliRunner().invoke(main, ["demo", "--quotes", "2000", "--days", "2", "--out", str(out), *args])
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and key in lines[0], (args, r.output)
        assert not out.exists()  # nothing ran: not even the implied-vol part printed


def test_a_changed_demo_setting_recomputes_only_the_stages_it_reaches(tmp_path: Path) -> None:
    """The demo's stages follow the one freshness rule (their _manifest.json): a [surfaces] change redoes
    the days' surfaces and not the synthetic data or the snapshots; a [demo] days change redoes the data."""
    import json

    import pytest

    from volfast.demo import DemoError, load_demo_config, run_pipeline
    from volfast.io.freshness import code_identity

    def run(*sets: str) -> dict:
        cfg = load_demo_config(None, ["days=2", "seed=1", "executor=serial", *sets])
        with pytest.raises(DemoError, match="valid days; the world model needs at least 10"):
            run_pipeline(tmp_path, cfg, console=Console(file=io.StringIO(), width=160))
        summary: dict = json.loads((tmp_path / "build" / "build-summary.json").read_text())
        return summary

    first = run()
    data_m = tmp_path / "data" / "_manifest.json"
    m = json.loads(data_m.read_text())
    assert (m["stage"], m["status"], m["code"]) == ("synth", "complete", code_identity())
    assert m["config"] == {"days": 2, "start": "2024-01-02", "seed": 1, "scale": "small"}
    assert first["counts"]["ok"] == 2
    stamp = data_m.stat().st_mtime_ns
    second = run("surfaces.arbitrage=check")
    assert data_m.stat().st_mtime_ns == stamp  # the data stage was reused
    for r in second["days"]:
        assert r["stages"]["snapshot"]["status"] == "skipped", r
        why = r["stages"]["surfaces"]["reason"]
        assert why.startswith("settings changed: surfaces.arbitrage") and "check" in why, why
    assert run("surfaces.arbitrage=check")["counts"]["skipped"] == 2  # unchanged: every day reused
    run("days=3", "surfaces.arbitrage=check")
    m = json.loads(data_m.read_text())
    assert m["recomputed_because"] == "settings changed: days 2 -> 3"
    # fewer days again: the third day leaves the data and every build table, so nothing downstream sees it
    from volfast.io.dbn import list_dates

    assert run("days=2", "surfaces.arbitrage=check")["counts"]["skipped"] == 2
    assert [d.isoformat() for d in list_dates(tmp_path / "data")] == ["2024-01-02", "2024-01-03"]
    for table in ("snapshots", "days", "grids", "svi", "forwards", "quotes"):
        assert sorted(p.name for p in (tmp_path / "build" / table).glob("date=*")) == [
            "date=2024-01-02",
            "date=2024-01-03",
        ], table


def test_demo_builds_a_dbn_folder_in_place(tmp_path: Path) -> None:
    """``--data DBN_DIR``: the user's folder is read where it is (nothing written into it); its days are
    built under the build's own per-day freshness rule."""
    import json

    import pytest

    from volfast.demo import DemoError, load_demo_config, run_pipeline
    from volfast.synth import generate_days

    data = tmp_path / "dbn"
    generate_days(dt.date(2024, 3, 4), 2, data, seed=1, scale="small")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    cfg = load_demo_config(None, [f'data="{data}"', "executor=serial"])
    with pytest.raises(DemoError, match="2 valid days; the world model needs at least 10"):
        run_pipeline(tmp_path / "run", cfg, console=Console(file=io.StringIO(), width=160))
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    summary = json.loads((tmp_path / "run" / "build" / "build-summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and not (tmp_path / "run" / "data").exists()
