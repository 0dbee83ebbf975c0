"""The latent-energy hedger: PnL identities on a hand-made market, then the CLI on a small synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests._agent_world import agent_world
from volfast.agent import AgentError, EnergyConfig, HedgeConfig, latent_energy, load_world
from volfast.agent.hedge import Market, metrics, simulate
from volfast.cli import main

D = np.array(["2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"], dtype="datetime64[D]")


def _market(fut: list[float], bids: list[float], asks: list[float]) -> Market:
    puts = pd.DataFrame(
        {
            "date": D,
            "raw_symbol": "EW1J4 P4750",
            "underlying": "ESM4",
            "exp_day": np.datetime64("2024-04-05", "D"),
            "strike": 4750.0,
            "bid": bids,
            "ask": asks,
            "mid": 0.5 * (np.array(bids) + np.array(asks)),
            "forward": fut,
        }
    )
    return Market(
        dates=D,
        futures={"ESM4": {d: f for d, f in zip(D, fut, strict=True)}},
        last_expiry={"ESM4": np.datetime64("2024-06-21", "D")},
        puts=puts,
    )


def test_unchanged_market_round_trip_loses_exactly_the_spread() -> None:
    mkt = _market([5000.0] * 5, [20.0] * 5, [21.0] * 5)
    cfg = HedgeConfig(futures=1.0, hold_days=2, budget=0.01)  # 0.01 * 5000 / 21 -> 2 contracts
    sig = {D[0]: True}
    sim = simulate(mkt, sig, D, cfg)
    assert len(sim["trades"]) == 1 and sim["trades"][0]["contracts"] == 2.0
    assert sim["trades"][0]["exit"] == str(D[2])
    assert np.all(sim["unhedged"] == 0.0)
    assert sim["hedged"].sum() == pytest.approx(-(21.0 - 20.0) * 50.0 * 2)
    assert sim["trades"][0]["pnl"] == pytest.approx(-100.0)
    assert sim["premium"].sum() == pytest.approx(21.0 * 50 * 2)


def test_hedged_is_unhedged_plus_put_minus_costs_in_a_selloff() -> None:
    fut = [5000.0, 4900.0, 4700.0, 4600.0, 4650.0]
    bids, asks = [20.0, 40.0, 90.0, 160.0, 140.0], [21.0, 42.0, 93.0, 165.0, 144.0]
    mkt = _market(fut, bids, asks)
    cfg = HedgeConfig(futures=1.0, hold_days=3, budget=0.01)
    sim = simulate(mkt, {D[0]: True, D[1]: True}, D, cfg)
    np.testing.assert_allclose(sim["hedged"], sim["unhedged"] + sim["put_pnl"] - sim["costs"])
    np.testing.assert_allclose(sim["unhedged"], 50.0 * np.diff(fut, prepend=fut[0]))
    (tr,) = sim["trades"]
    assert tr["exit"] == str(D[3])  # held 3 days, signal off: sold at the bid
    n = tr["contracts"]
    assert (sim["put_pnl"] - sim["costs"]).sum() == pytest.approx((160.0 - 21.0) * 50.0 * n)
    assert sim["hedged"].sum() > sim["unhedged"].sum()


def test_no_signal_no_trade_and_missing_put_is_reported() -> None:
    mkt = _market([5000.0] * 5, [20.0] * 5, [21.0] * 5)
    sim = simulate(mkt, {}, D, HedgeConfig())
    assert sim["trades"] == [] and np.all(sim["hedged"] == sim["unhedged"])
    sim = simulate(mkt, {D[0]: True}, D, HedgeConfig(put_symbol="EW1J4 P9999"))
    assert sim["trades"] == [] and "EW1J4 P9999" in sim["skipped"][0]
    sim = simulate(mkt, {D[0]: True}, D, HedgeConfig(futures=1.0, budget=1e-4))  # buys less than one contract
    assert sim["trades"] == [] and "budget" in sim["skipped"][0]


def test_metrics_drawdown_and_sharpe() -> None:
    m = metrics(np.array([100.0, -300.0, 50.0, 400.0]), 10_000.0)
    assert m["max_drawdown"] == pytest.approx(300.0)
    assert m["total_pnl"] == pytest.approx(250.0)
    r = np.array([100.0, -300.0, 50.0, 400.0]) / 1e4
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))


@pytest.fixture(scope="session")
def world_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return agent_world(tmp_path_factory)


def test_energy_threshold_is_calibrated_on_training_days_only(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    w = load_world(run, data=build, device="cpu")
    en = latent_energy(w, EnergyConfig(quantile=0.8))
    tr = w.train_mask()
    assert en.threshold == pytest.approx(np.quantile(en.energy[tr], 0.8))
    w.z[w.test_mask()] += 100.0  # the test period cannot move the threshold
    assert latent_energy(w, EnergyConfig(quantile=0.8)).threshold == pytest.approx(en.threshold)


def test_cli_hedge_out_of_sample(world_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    build, run = world_dirs
    out = tmp_path / "hedge"
    r = CliRunner().invoke(
        main, ["hedge", "--run", str(run), "--data", str(build), "--out", str(out), "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "hedge.parquet")
    np.testing.assert_allclose(df["hedged"], df["unhedged"] + df["put_pnl"] - df["costs"])
    w = load_world(run, data=build, device="cpu")
    assert (df["date"].to_numpy().astype("datetime64[D]") >= np.datetime64(w.split.test_start, "D")).all()


def test_bad_inputs(world_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from volfast.agent import run_hedge

    build, run = world_dirs
    with pytest.raises(AgentError, match="out of sample"):
        run_hedge(run, build, tmp_path / "h", overrides=["start=2024-01-02"], device="cpu")
    with pytest.raises(AgentError, match="no such put"):
        run_hedge(run, build, tmp_path / "h", overrides=["put_symbol=NOPE P1"], device="cpu")
    with pytest.raises(AgentError, match="need at least 2"):
        run_hedge(run, build, tmp_path / "h", overrides=["start=2030-01-01"], device="cpu")
    with pytest.raises(AgentError, match="quotes stage is missing.*volfast build"):
        run_hedge(run, tmp_path, tmp_path / "h", device="cpu")
    (tmp_path / "run2" / "cvae").mkdir(parents=True)
    import shutil

    shutil.copytree(run / "cvae", tmp_path / "run2" / "cvae", dirs_exist_ok=True)
    with pytest.raises(AgentError, match="no trained lstm.*volfast train --model lstm"):
        load_world(tmp_path / "run2", data=build)
    with pytest.raises(AgentError, match="no encoder stage"):
        load_world(tmp_path, data=build)
    r = CliRunner().invoke(
        main, ["hedge", "--run", str(tmp_path / "run2"), "--data", str(build), "--out", str(tmp_path / "h")]
    )
    assert r.exit_code != 0 and "volfast train --model lstm" in r.output
