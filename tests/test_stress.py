"""Stress tests: half-life on known paths, shock + rollout, Monte Carlo, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests._agent_world import agent_world
from volfast.agent import AgentError, StressConfig, load_world, surface_features
from volfast.agent.stress import half_life, monte_carlo, shock_rollout, worst_day
from volfast.cli import main


def test_half_life_of_an_exponential_decay() -> None:
    for hl in (3.0, 7.5, 12.0):
        e = 0.05 * 0.5 ** (np.arange(60) / hl)
        assert half_life(e) == pytest.approx(hl, abs=0.05)  # linear interpolation between steps
    assert np.isnan(half_life(np.full(50, 0.02)))  # no reversion
    assert np.isnan(half_life(np.zeros(5)))


def test_surface_features_on_a_linear_smile() -> None:
    k = np.linspace(-0.5, 0.15, 11)
    v = np.stack([0.2 - 0.3 * k, 0.22 - 0.2 * k, 0.25 - 0.1 * k])[None]  # (1, 3, 11)
    f = surface_features(v, k, np.array([[0.1, 0.3, 0.6]]))
    assert f["atm"][0] == pytest.approx(0.2)
    assert f["skew"][0] == pytest.approx(0.3)
    assert f["term"][0] == pytest.approx((0.25 - 0.2) / 0.5)


@pytest.fixture(scope="session")
def world_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return agent_world(tmp_path_factory)


def test_shock_rollout_zero_shock_is_the_base_path(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    w = load_world(run, data=build, device="cpu")
    row = worst_day(w)
    res = shock_rollout(w, StressConfig(shock="scale", scale=1.0, steps=10), row)
    np.testing.assert_allclose(res["vols_shock"], res["vols_base"], atol=1e-6)
    res = shock_rollout(w, StressConfig(shock="direction", magnitude=3.0, steps=10), row)
    assert res["vols_shock"].shape == (11, 3, 11)
    assert np.all(res["vols_shock"] > 0)
    # step 0 of the base path is the decoded start day, close to its observed surface
    assert np.abs(res["vols_base"][0] - w.ds.cvae[row]).max() < 0.05


def test_monte_carlo_prior_and_lstm(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    w = load_world(run, data=build, device="cpu")
    row = worst_day(w)
    for src in ("prior", "lstm", "gaussian"):
        mc = monte_carlo(w, StressConfig(mc_source=src, mc_scenarios=300, mc_batch=128, mc_horizon=3), row)
        assert mc["vols"].shape == (300, 3, 11) and np.all(np.isfinite(mc["vols"]))
        assert mc["moves"]["atm"].std() > 0
    # batch size does not change the scenarios
    a = monte_carlo(w, StressConfig(mc_source="lstm", mc_scenarios=50, mc_batch=50, mc_horizon=2), row)
    b = monte_carlo(w, StressConfig(mc_source="prior", mc_scenarios=50, mc_batch=7, mc_horizon=2), row)
    c = monte_carlo(w, StressConfig(mc_source="prior", mc_scenarios=50, mc_batch=50, mc_horizon=2), row)
    np.testing.assert_allclose(b["vols"], c["vols"], atol=1e-6)
    assert a["vols"].shape == (50, 3, 11)


def test_cli_stress_writes_parquet_frames_gif(world_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    build, run = world_dirs
    out = tmp_path / "stress"
    args = ["stress", "--run", str(run), "--data", str(build), "--out", str(out), "--device", "cpu"]
    r = CliRunner().invoke(main, [*args, "--set", "steps=6", "--set", "mc_scenarios=200"])
    assert r.exit_code == 0, r.output
    path = pd.read_parquet(out / "path.parquet")
    assert len(path) == 14 and set(path["path"]) == {"shock", "base"}
    assert len(pd.read_parquet(out / "scenarios.parquet")) == 200
    assert len(list((out / "frames").glob("frame_*.png"))) == 7
    assert (out / "stress.gif").stat().st_size > 0
    summary = json.loads((out / "stress.json").read_text())  # the file, not the console text
    assert set(summary["half_life_steps"]) == set(summary["reverts"]) and summary["half_life_steps"]
    assert summary["config"]["steps"] == 6
    r = CliRunner().invoke(main, [*args, "--set", "date=2031-01-01"])
    assert r.exit_code != 0 and "not a complete day" in r.output
    r = CliRunner().invoke(main, [*args, "--set", "shock=sideways"])
    assert r.exit_code != 0 and "direction or scale" in r.output


def test_model_that_does_not_match_the_dataset(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    ds = load_world(run, data=build, device="cpu").ds
    bad = ds.subset(slice(None))
    bad.cvae = bad.cvae[:, :, :7]
    with pytest.raises(AgentError, match="does not match the dataset"):
        load_world(run, data=bad)


def test_frames_switch_no_backend_and_leave_pyplot_alone(tmp_path: Path) -> None:
    """Issue 14: drawing the stress frames changes nothing global (no ``matplotlib.use``, no pyplot
    figures left open)."""
    import types

    import matplotlib
    import matplotlib.pyplot as plt

    from volfast.agent.stress import write_frames

    k = np.linspace(-0.3, 0.3, 5)
    vols = 0.2 + 0.1 * k**2 + np.zeros((3, 2, 1))  # (steps, expiries, k)
    res = {"vols_shock": vols * 1.1, "vols_base": vols, "years": [0.1, 0.5], "date": "2024-01-02"}
    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # not Agg: a run-time matplotlib.use("Agg") would show
    try:
        figs = plt.get_fignums()
        out = write_frames(types.SimpleNamespace(k=k), res, tmp_path / "frames")
        assert matplotlib.get_backend() == "pdf" and plt.get_fignums() == figs
    finally:
        matplotlib.use(before)
    assert out["frames"] == 3
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(pngs) == 3 and all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
