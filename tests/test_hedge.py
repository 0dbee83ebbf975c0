"""The latent-energy hedger: PnL identities on a hand-made market, then the CLI on a small synthetic world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import volfast
from tests._agent_world import agent_world
from volfast.agent import AgentError, EnergyConfig, HedgeConfig, latent_energy, load_world
from volfast.agent.energy import trailing_change
from volfast.agent.hedge import Market, contracts_for, metrics, read_market, simulate, walk_forward
from volfast.agent.scenarios import (
    SpreadTable,
    Universe,
    fit_futures_relation,
    fit_spread_table,
    run_scenarios,
    scenario_prices,
    simulate_batch,
)
from volfast.cli import main

D = np.array(["2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"], dtype="datetime64[D]")


def _market(fut: list[float], bids: list[float], asks: list[float], exp_day: str = "2024-04-05") -> Market:
    puts = pd.DataFrame(
        {
            "date": D,
            "raw_symbol": "EW1J4 P4750",
            "underlying": "ESM4",
            "exp_day": np.datetime64(exp_day, "D"),
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


# --- the hedger on hallucinated scenarios: the scenario market rule and the batched simulator ---------


def _universe(strikes: list[float], exp_days: list[str], iv: float = 0.2) -> Universe:
    n = len(strikes)
    exp = np.array(exp_days, dtype="datetime64[D]")
    return Universe(
        symbols=np.array([f"P{k:.0f}" for k in strikes]),
        strike=np.array(strikes),
        exp_day=exp,
        years=(exp - D[0]).astype(np.float64) / 365.0,
        basis=np.ones(n),
        discount=np.full(n, 0.99),
        iv0=np.full(n, iv),
    )


FLAT_SPREAD = SpreadTable(median=np.full((5, 5), 0.04), overall=0.04, n=100)


def test_scenario_market_unchanged_surface_costs_only_the_spread_or_the_black76_decay() -> None:
    uni = _universe([4750.0, 4800.0], ["2024-04-05", "2024-04-05"])
    k_grid, y_grid = np.linspace(-0.5, 0.15, 11), np.array([0.02, 0.04, 0.06])
    vols = np.broadcast_to(0.15 + 0.3 * k_grid**2, (1, 5, 3, 11)).copy()  # the same surface every step
    fut = np.full((1, 5), 5000.0)
    cfg = HedgeConfig(futures=10.0, hold_days=2, budget=0.01, otm=0.05)
    sig = np.array([[True, False, False, False, False]])
    strike, exp_id = uni.strike, np.zeros(2, np.int64)
    # no ageing: every put keeps its start price, the round trip loses exactly its spread
    bid, ask = scenario_prices(uni, fut, vols, k_grid, y_grid, np.zeros(5), FLAT_SPREAD)
    mid0 = volfast.black76_price(
        forward=5000.0, strike=strike, expiry_years=uni.years, vol=0.2, is_call=False, discount_factor=0.99
    )
    np.testing.assert_allclose(0.5 * (bid + ask), np.broadcast_to(mid0, (1, 5, 2)), rtol=1e-12)
    dte = np.broadcast_to((uni.exp_day - D[0]).astype(np.int64), (5, 2))
    sim = simulate_batch(fut, bid, ask, sig, dte, strike, exp_id, cfg)
    assert sim["trades"][0] == 1 and np.all(sim["unhedged"] == 0.0)
    n_c = np.floor(0.01 * 10 * 5000.0 / ask[0, 0, 0])  # the 4750 put: strike nearest 5000 x 0.95
    assert sim["hedged"].sum() == pytest.approx(-n_c * 50.0 * 0.04 * mid0[0])
    assert sim["round_trip"][0] == pytest.approx(sim["hedged"].sum())
    # with ageing (ACT/365): the put is worth Black-76 at its start vol and shorter expiry
    elapsed = (D - D[0]).astype(np.float64) / 365.0
    bid, ask = scenario_prices(uni, fut, vols, k_grid, y_grid, elapsed, FLAT_SPREAD)
    mid = volfast.black76_price(
        forward=5000.0,
        strike=4750.0,
        expiry_years=uni.years[0] - elapsed,
        vol=0.2,
        is_call=False,
        discount_factor=0.99,
    )
    np.testing.assert_allclose(0.5 * (bid + ask)[0, :, 0], mid, rtol=1e-12)
    sim = simulate_batch(fut, bid, ask, sig, dte - (D - D[0]).astype(np.int64)[:, None], strike, exp_id, cfg)
    assert sim["put_pnl"].sum() == pytest.approx(n_c * 50.0 * (mid[2] - mid[0]))
    assert mid[2] < mid[0]


def test_scenario_market_follows_the_decoded_vol_change() -> None:
    uni = _universe([4750.0], ["2024-04-05"])
    k_grid, y_grid = np.linspace(-0.5, 0.15, 11), np.array([0.02, 0.04, 0.06])
    vols = np.full((1, 3, 3, 11), 0.15)
    vols[0, 1:] += 0.05  # the whole surface up 5 vol points from step 1
    fut = np.array([[5000.0, 4900.0, 4900.0]])
    bid, ask = scenario_prices(uni, fut, vols, k_grid, y_grid, np.zeros(3), FLAT_SPREAD)
    want = volfast.black76_price(
        forward=4900.0,
        strike=4750.0,
        expiry_years=uni.years[0],
        vol=0.25,
        is_call=False,
        discount_factor=0.99,
    )
    assert 0.5 * (bid + ask)[0, 1, 0] == pytest.approx(want, rel=1e-12)
    assert (ask - bid)[0, 1, 0] == pytest.approx(0.04 * want, rel=1e-12)


def _scenario_market(fut: np.ndarray, bid: np.ndarray, ask: np.ndarray, uni: Universe) -> Market:
    rows = []
    for t, d in enumerate(D):
        for p in range(uni.strike.size):
            rows.append(
                {
                    "date": d,
                    "raw_symbol": uni.symbols[p],
                    "underlying": "ESM4",
                    "exp_day": uni.exp_day[p],
                    "strike": uni.strike[p],
                    "bid": bid[t, p],
                    "ask": ask[t, p],
                    "mid": 0.5 * (bid[t, p] + ask[t, p]),
                    "forward": fut[t],
                }
            )
    return Market(
        dates=D,
        futures={"ESM4": {d: float(f) for d, f in zip(D, fut, strict=True)}},
        last_expiry={"ESM4": np.datetime64("2024-06-21", "D")},
        puts=pd.DataFrame(rows),
    )


VARIANTS = {
    "budget": {},
    # coverage sizing with both premium caps, a maximum holding period and a cool-down
    "coverage": {
        "coverage": 1.0,
        "budget": 0.02,
        "annual_budget": 0.03,
        "max_hold_days": 2,
        "cooldown_days": 1,
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("seed", range(6))
def test_batched_scenarios_reproduce_the_historical_simulator(seed: int, variant: str) -> None:
    rng = np.random.default_rng(seed)
    uni = _universe(
        [4600.0, 4700.0, 4750.0, 4800.0, 4700.0, 4750.0, 4800.0],
        ["2024-03-15"] + ["2024-04-05"] * 3 + ["2024-04-19"] * 3,
    )
    n = 8
    fut = 5000.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, 5)), axis=1))
    k_grid, y_grid = np.linspace(-0.5, 0.15, 11), np.array([0.02, 0.04, 0.06])
    vols = 0.15 + 0.05 * rng.random((n, 5, 3, 11))
    elapsed = (D - D[0]).astype(np.float64) / 365.0
    bid, ask = scenario_prices(uni, fut, vols, k_grid, y_grid, elapsed, FLAT_SPREAD)
    bid[rng.random(bid.shape) < 0.1] = 0.0  # some one-sided quotes: stale marks, skipped exits
    sig = rng.random((n, 5)) < 0.5
    base = {
        "futures": 10.0,
        "hold_days": 2,
        "budget": 0.02,
        "target_days": 30,
        "min_days": 14,
        "exit_days": 3,
    }
    cfg = HedgeConfig(**(base | VARIANTS[variant]))  # type: ignore[arg-type]
    dte = (uni.exp_day[None, :] - D[:, None]).astype(np.int64)
    _, exp_id = np.unique(uni.exp_day, return_inverse=True)
    sim = simulate_batch(fut, bid, ask, sig, dte, uni.strike, exp_id, cfg)
    np.testing.assert_allclose(sim["hedged"], sim["unhedged"] + sim["put_pnl"] - sim["costs"])
    assert sim["trades"].sum() >= 2 and (sim["costs"] > 0).any()
    for i in range(n):
        ref = simulate(
            _scenario_market(fut[i], bid[i], ask[i], uni), dict(zip(D, sig[i], strict=True)), D, cfg
        )
        for k in ("unhedged", "hedged", "put_pnl", "costs", "premium", "contracts"):
            np.testing.assert_allclose(sim[k][i], ref[k], rtol=1e-12, atol=1e-9, err_msg=f"{k} scenario {i}")
        assert sim["trades"][i] == len(ref["trades"])
        closed = sum(t["pnl"] for t in ref["trades"] if "pnl" in t)
        assert sim["round_trip"][i] == pytest.approx(closed)


def test_spread_table_uses_training_quotes_only() -> None:
    mkt = _market([5000.0] * 5, [20.0] * 5, [21.0] * 5)
    before = D[3]
    tab = fit_spread_table(Market(mkt.dates, mkt.futures, mkt.last_expiry, pd.concat([mkt.puts] * 4)), before)
    assert tab.overall == pytest.approx(1.0 / 20.5)
    wild = mkt.puts.copy()
    wild.loc[wild["date"] >= before, "ask"] = 100.0  # test-period quotes cannot move it
    assert fit_spread_table(
        Market(mkt.dates, mkt.futures, mkt.last_expiry, pd.concat([wild] * 4)), before
    ).overall == pytest.approx(tab.overall)
    with pytest.raises(AgentError, match="need at least 10"):
        fit_spread_table(mkt, before)


def test_cli_hedge_scenarios_out_of_sample(world_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    build, run = world_dirs
    out = tmp_path / "hs"
    args = ["hedge", "--run", str(run), "--data", str(build), "--out", str(out), "--device", "cpu"]
    r = CliRunner().invoke(main, [*args, "--scenarios", "40", "--set", "scenarios.horizon=8"])
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "scenarios.parquet")
    assert sorted(df["set"].unique()) == ["lstm", "shocked"] and (df["set"] == "lstm").sum() == 40
    np.testing.assert_allclose(df["hedged"], df["unhedged"] + df["put_pnl"] - df["costs"])
    w = load_world(run, data=build, device="cpu")
    test_start = np.datetime64(w.split.test_start, "D")
    assert (df["start"].to_numpy().astype("datetime64[D]") >= test_start).all()
    summary = json.loads((out / "scenarios.json").read_text())
    assert summary["calibration"]["before"] == str(test_start)
    assert all(np.datetime64(d) < test_start for d in summary["calibration"]["crash_days"])
    # the futures relation is fitted on training days: test-period futures cannot move it
    mkt = read_market(build)
    rel = fit_futures_relation(w, mkt, 5.0)
    for px in mkt.futures.values():
        for d in px:
            if d >= test_start:
                px[d] *= 1.5
    assert fit_futures_relation(w, mkt, 5.0) == rel
    with pytest.raises(AgentError, match="out of sample"):
        run_scenarios(run, build, tmp_path / "x", overrides=["scenarios.date=2024-01-03"], device="cpu")


# --- sizing, timing and the change alarm -------------------------------------------------------------


def test_coverage_sizing_counts_contracts_from_the_rule_and_the_caps_bind() -> None:
    mkt = _market([5000.0] * 5, [20.0] * 5, [21.0] * 5)
    # coverage 1 on 10 futures at F 5000 with the 4750 put: floor(10 x 5000 / 4750) = 10 puts
    sim = simulate(mkt, {D[0]: True}, D, HedgeConfig(coverage=1.0, budget=0.05, hold_days=2))
    (tr,) = sim["trades"]
    assert tr["contracts"] == 10.0 and tr["strike"] == 4750.0
    assert sim["premium"].sum() == pytest.approx(10 * 50.0 * 21.0)
    assert sim["hedged"].sum() == pytest.approx(-10 * 50.0 * 1.0)  # the round trip loses the spread
    sim = simulate(mkt, {D[0]: True}, D, HedgeConfig(coverage=0.5, budget=0.05, hold_days=2))
    assert sim["trades"][0]["contracts"] == 5.0  # floor(0.5 x 10.53)
    # the per-hedge budget caps it: floor(0.003 x 10 x 5000 / 21) = 7
    sim = simulate(mkt, {D[0]: True}, D, HedgeConfig(coverage=1.0, budget=0.003, hold_days=2))
    assert sim["trades"][0]["contracts"] == 7.0
    assert sim["premium"].sum() == pytest.approx(7 * 50.0 * 21.0)
    assert sim["premium"].sum() <= 0.003 * 10 * 50 * 5000
    # the annual budget: 0.006 x $2.5M = $15,000; the first hedge pays $10,500, the second gets
    # floor(4,500 / (21 x 50)) = 4 contracts
    cfg = HedgeConfig(coverage=1.0, budget=0.05, annual_budget=0.006, hold_days=1)
    sim = simulate(mkt, {D[0]: True, D[2]: True}, D, cfg)
    assert [t["contracts"] for t in sim["trades"]] == [10.0, 4.0]
    assert sim["premium"].sum() <= 0.006 * 10 * 50 * 5000
    sim = simulate(mkt, {D[0]: True, D[2]: True}, D, HedgeConfig(coverage=1.0, budget=0.05, hold_days=1))
    assert [t["contracts"] for t in sim["trades"]] == [10.0, 10.0]  # no annual cap
    # the sizing function itself, elementwise
    n = contracts_for(
        HedgeConfig(coverage=2.0, budget=0.01, annual_budget=0.02),
        forward=np.array([5000.0, 5000.0, 5000.0]),
        strike=np.array([4750.0, 4750.0, 4750.0]),
        ask=np.array([10.0, 40.0, 10.0]),
        spent=np.array([0.0, 0.0, 49_000.0]),
    )
    # rule 21; budget cap 50 / 12; annual room $50,000 -> 100 / 100 / 2
    np.testing.assert_array_equal(n, [21.0, 12.0, 2.0])
    assert contracts_for(HedgeConfig(budget=0.01), forward=5000.0, strike=4750.0, ask=21.0, spent=0.0) == 23.0
    with pytest.raises(ValueError, match="coverage >= 0"):
        HedgeConfig(coverage=-1.0)
    with pytest.raises(ValueError, match="max_hold_days must be >= hold_days"):
        HedgeConfig(hold_days=10, max_hold_days=5)


def test_max_hold_and_cool_down_are_respected() -> None:
    mkt = _market([5000.0] * 5, [20.0] * 5, [21.0] * 5)
    always = {d: True for d in D}
    # without a limit the alarm keeps the first put on to the end
    sim = simulate(mkt, always, D, HedgeConfig(hold_days=1))
    assert len(sim["trades"]) == 1 and sim["trades"][0].get("open_at_end")
    # max_hold_days=2: sold on the second day held although the alarm is still on, re-bought the same day
    sim = simulate(mkt, always, D, HedgeConfig(hold_days=1, max_hold_days=2))
    want = [(str(D[0]), str(D[2])), (str(D[2]), str(D[4]))]
    assert [(t["entry"], t["exit"]) for t in sim["trades"]] == want
    # ... and with a 2-day cool-down no new put until D[2] + 3 (past the end): one trade
    sim = simulate(mkt, always, D, HedgeConfig(hold_days=1, max_hold_days=2, cooldown_days=2))
    assert [(t["entry"], t["exit"]) for t in sim["trades"]] == [(str(D[0]), str(D[2]))]
    assert sum("cool-down" in m for m in sim["skipped"]) == 3  # D[2], D[3], D[4]: sale day + 2
    np.testing.assert_array_equal(sim["contracts"] > 0, [True, True, False, False, False])
    # cool-down 1: blocked on the sale day and the next, bought again on D[4]? no: not on the last day
    sim = simulate(mkt, always, D, HedgeConfig(hold_days=1, max_hold_days=1, cooldown_days=1))
    assert [(t["entry"], t["exit"]) for t in sim["trades"]] == [
        (str(D[0]), str(D[1])),
        (str(D[3]), str(D[4])),
    ]


def test_unsold_put_settles_at_intrinsic_at_expiry() -> None:
    # no bid after the purchase: it cannot be sold and expires on D[3] in the money by 150 points
    mkt = _market(
        [5000.0, 4800.0, 4700.0, 4600.0, 4600.0], [20.0, 0, 0, 0, 0], [21.0] * 5, exp_day="2024-03-06"
    )
    sim = simulate(
        mkt,
        {D[0]: True},
        D,
        HedgeConfig(futures=1.0, budget=0.01, hold_days=1, exit_days=0, put_symbol="EW1J4 P4750"),
    )
    (tr,) = sim["trades"]
    assert tr["exit"] == str(D[3]) and tr["bid"] == pytest.approx(150.0)
    assert tr["pnl"] == pytest.approx((150.0 - 21.0) * 50.0 * tr["contracts"])
    assert (sim["put_pnl"] - sim["costs"]).sum() == pytest.approx(tr["pnl"])


def test_trailing_change_matches_a_slow_reference() -> None:
    rng = np.random.default_rng(0)
    hist, paths = rng.random(7), rng.random((3, 9))
    got = trailing_change(hist, paths, 5)
    for i in range(3):
        seq = np.concatenate([hist, paths[i]])
        for t in range(9):
            j = hist.size + t
            assert got[i, t] == pytest.approx(seq[j] - np.median(seq[j - 5 : j]))
    first = trailing_change(np.empty(0), paths[:1], 4)[0]  # no history: NaN until 2 earlier values
    assert np.isnan(first[:2]).all() and first[2] == pytest.approx(paths[0, 2] - np.median(paths[0, :2]))


def test_change_alarm_threshold_uses_no_test_period_data(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    w = load_world(run, data=build, device="cpu")
    cfg = EnergyConfig(alarm="change", window=6, quantile=0.8)
    en = latent_energy(w, cfg)
    lvl = latent_energy(w, EnergyConfig(quantile=0.8))
    assert en.raw is not None and np.allclose(en.raw, lvl.energy, equal_nan=True)
    tr = w.train_mask() & np.isfinite(en.energy)
    assert en.threshold == pytest.approx(np.quantile(en.energy[tr], 0.8))
    assert en.threshold != pytest.approx(lvl.threshold)
    rows = np.flatnonzero(w.ok)
    r = rows[10]  # the excess over the median of the 6 complete days before
    assert en.energy[r] == pytest.approx(en.raw[r] - np.median(en.raw[rows[4:10]]))
    w.z[w.test_mask()] += 100.0  # test-period energies explode: threshold and training scores unchanged
    en2 = latent_energy(w, cfg)
    assert en2.threshold == pytest.approx(en.threshold)
    np.testing.assert_allclose(en2.energy[w.train_mask()], en.energy[w.train_mask()])
    assert np.nanmax(en2.raw[w.test_mask()]) > np.nanmax(en.raw[w.test_mask()])


def test_walk_forward_stays_inside_the_training_period(world_dirs: tuple[Path, Path]) -> None:
    build, run = world_dirs
    w = load_world(run, data=build, device="cpu")
    mkt = read_market(build)
    cands = {"level": EnergyConfig(), "change": EnergyConfig(alarm="change", window=4)}
    cfg = HedgeConfig(coverage=1.0, budget=0.05)
    wf = walk_forward(w, mkt, cfg, cands)
    test_start = np.datetime64(w.split.test_start, "D")
    assert len(wf["folds"]) == 2 and all(np.datetime64(b) < test_start for _, b in wf["folds"])
    for c in wf["candidates"].values():
        assert c["score"] == pytest.approx(sum(f["score"] for f in c["folds"]))
        for f in c["folds"]:
            want = (f["unhedged_max_dd"] - f["hedged_max_dd"]) - f["carry"]
            assert f["score"] == pytest.approx(want)
    assert wf["best"] in cands
    w.z[w.test_mask()] += 100.0  # the test period cannot change the choice
    for px in mkt.futures.values():
        for d in px:
            if d >= test_start:
                px[d] *= 0.5
    assert walk_forward(w, mkt, cfg, cands) == wf
