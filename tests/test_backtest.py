"""CVAE signal backtest: accounting identities on hand-built markets, no look-ahead, a walk-forward run on
a small synthetic build, and the bad inputs a user can produce."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from volfast import black76_gamma, black76_price
from volfast.backtest import (
    BacktestConfig,
    BacktestError,
    DayMarket,
    Ledger,
    Market,
    backtest,
    expanding_zscores,
    half_life,
    load_backtest_config,
    nearest_option,
    run_engine,
    walk_forward,
)
from volfast.backtest.signal import cvae_fitter
from volfast.models.cvae import CVAEConfig
from volfast.models.train import TrainConfig

D0 = dt.date(2024, 3, 4)
EXP = pd.Timestamp("2024-06-21 13:30", tz="UTC")
FUT = 100


# ------------------------------------------------------------------------------- hand-built markets
def _option(
    iid: int, *, strike: float, is_call: bool, bid: float, ask: float, forward: float = 5000.0,
    expiry_years: float = 0.25, vol: float = 0.2,
) -> dict[str, object]:  # fmt: skip
    return {
        "instrument_id": iid,
        "raw_symbol": f"ESM4 {'C' if is_call else 'P'}{strike:.0f}",
        "underlying": "ESM4",
        "expiration": EXP,
        "expiry_years": expiry_years,
        "strike": strike,
        "is_call": is_call,
        "bid": bid,
        "ask": ask,
        "mid": 0.5 * (bid + ask),
        "forward": forward,
        "discount_factor": 1.0,
        "log_moneyness": float(np.log(strike / forward)),
        "mid_iv": vol,
        "fit_iv": vol,
        "multiplier": 50.0,
    }


def _day(d: dt.date, options: list[dict[str, object]], fut_bid: float, fut_ask: float) -> DayMarket:
    o = pd.DataFrame(options).set_index("instrument_id")
    f = pd.DataFrame(
        [
            {
                "instrument_id": FUT,
                "raw_symbol": "ESM4",
                "expiration": EXP,
                "bid": fut_bid,
                "ask": fut_ask,
                "mid": 0.5 * (fut_bid + fut_ask),
                "multiplier": 50.0,
            }
        ]  # fmt: skip
    ).set_index("instrument_id")
    return DayMarket(d, o, f)


def _decision(d: dt.date, iid: int, side: int, hold: int) -> pd.DataFrame:
    return pd.DataFrame([{"date": d, "instrument_id": iid, "side": side, "hold_days": hold, "z": 3.0}])


def test_round_trip_at_unchanged_prices_costs_spread_and_commissions() -> None:
    opt = _option(1, strike=4800, is_call=False, bid=40.0, ask=41.5)
    days = {
        D0 + dt.timedelta(days=k): _day(D0 + dt.timedelta(days=k), [opt], 5000.0, 5000.0) for k in range(3)
    }
    cfg = BacktestConfig(contracts=7, option_commission=1.25, future_commission=0.0)
    for side in (1, -1):
        res = run_engine(Market(days), _decision(D0, 1, side, 1), cfg)
        lost = cfg.capital - res.daily["equity"].iloc[-1]
        expect = 1.5 * 50 * 7 + 2 * 7 * 1.25  # spread x multiplier x contracts + commissions both sides
        assert lost == pytest.approx(expect, abs=1e-8)
        t = res.trades.iloc[0]
        assert t["entry_price"] == (41.5 if side > 0 else 40.0) and t["exit_price"] == (
            40.0 if side > 0 else 41.5
        )
        assert res.daily["pnl_spread"].sum() == pytest.approx(1.5 * 50 * 7)
        assert res.daily["pnl_option"].sum() == pytest.approx(0.0, abs=1e-9)
        assert t["pnl"] == pytest.approx(-expect)


def test_delta_hedged_option_earns_the_gamma_term() -> None:
    f0, df_move, k, t_, vol, n = 5000.0, 25.0, 5000.0, 0.25, 0.2, 10.0

    def quote(f: float) -> dict[str, object]:
        p = float(black76_price(forward=f, strike=k, expiry_years=t_, vol=vol, is_call=True))
        return _option(1, strike=k, is_call=True, bid=p, ask=p, forward=f, expiry_years=t_, vol=vol)

    d1 = D0 + dt.timedelta(days=1)
    m = Market(
        {D0: _day(D0, [quote(f0)], f0, f0), d1: _day(d1, [quote(f0 + df_move)], f0 + df_move, f0 + df_move)}
    )
    cfg = BacktestConfig(contracts=n, option_commission=0.0, future_commission=0.0, hold_days=5)
    res = run_engine(m, _decision(D0, 1, 1, 5), cfg)
    day1 = res.daily.iloc[1]
    gamma = float(black76_gamma(forward=f0, strike=k, expiry_years=t_, vol=vol))
    expect = 0.5 * gamma * df_move**2 * 50 * n
    assert day1["pnl_option"] + day1["pnl_hedge"] == pytest.approx(expect, rel=0.03)
    assert abs(day1["pnl_option"]) > 20 * expect  # the hedge really cancelled a large first-order move
    assert res.daily["net_delta"].abs().max() < 1e-6  # hedged to zero at each cut
    assert res.daily["futures"].iloc[0] == pytest.approx(-n * 0.5 * 1.0, rel=0.1)  # about -0.5 x 10 contracts


def test_equity_is_cash_plus_marks_and_attribution_sums() -> None:
    a = _option(1, strike=4800, is_call=False, bid=40.0, ask=41.0)
    b = _option(2, strike=5200, is_call=True, bid=30.0, ask=31.0)
    rng = np.random.default_rng(0)
    days = {}
    for k in range(6):
        d = D0 + dt.timedelta(days=k)
        s = rng.normal(0, 2, 3)
        fb = 5000 + 10 * s[0]
        days[d] = _day(
            d,
            [
                dict(a, bid=40 + s[1], ask=41 + s[1], mid=40.5 + s[1]),
                dict(b, bid=30 + s[2], ask=31 + s[2], mid=30.5 + s[2]),
            ],
            fb,
            fb + 0.25,
        )
    dec = pd.concat([_decision(D0, 1, 1, 3), _decision(D0 + dt.timedelta(days=1), 2, -1, 2)])
    res = run_engine(Market(days), dec, BacktestConfig(contracts=3))
    daily = res.daily
    assert np.allclose(daily["equity"], daily["cash"] + daily["marks"])
    parts = daily["pnl_option"] + daily["pnl_hedge"] - daily["pnl_spread"] - daily["pnl_commission"]
    assert np.allclose(parts, daily["pnl"])
    eq = np.concatenate([[BacktestConfig().capital], daily["equity"]])
    assert np.allclose(np.diff(eq), daily["pnl"])
    # marks by hand on day 2 (both options open, a futures hedge): qty x mid x multiplier
    d2 = daily.iloc[2]
    day = days[D0 + dt.timedelta(days=2)]
    hand = (
        3 * day.options.at[1, "mid"] * 50
        - 3 * day.options.at[2, "mid"] * 50
        + d2["futures"] * day.futures.at[FUT, "mid"] * 50
    )
    assert d2["marks"] == pytest.approx(hand)


def test_ledger_fill_and_mark() -> None:
    led = Ledger(0.0)
    led.fill(7, 2, price=10.5, mid=10.0, multiplier=50.0, kind="option", commission=1.0)
    assert led.cash == pytest.approx(-2 * 10.5 * 50 - 2.0)
    assert led.equity() == pytest.approx(-0.5 * 2 * 50 - 2.0)
    led.mark(7, 12.0)
    assert led.day["option"] == pytest.approx(2 * 2 * 50)
    led.fill(7, -2, price=11.5, mid=12.0, multiplier=50.0, kind="option", commission=1.0)
    assert 7 not in led.positions
    assert led.equity() == pytest.approx(led.day_pnl())


def test_nearest_option_takes_the_otm_strike_on_the_nearest_expiry() -> None:
    opts = [
        _option(1, strike=4500, is_call=False, bid=10, ask=11),
        _option(2, strike=4550, is_call=False, bid=12, ask=13),
        _option(3, strike=4550, is_call=True, bid=480, ask=482),
        _option(4, strike=4550, is_call=False, bid=14, ask=15, expiry_years=0.5),
        _option(5, strike=5300, is_call=True, bid=float("nan"), ask=1.0),  # one-sided: never picked
        _option(6, strike=5250, is_call=True, bid=3.0, ask=3.5),
    ]
    day = _day(D0, opts, 5000, 5000.25)
    assert nearest_option(day, expiry_years=0.26, log_moneyness=np.log(4560 / 5000)) == 2
    assert nearest_option(day, expiry_years=0.45, log_moneyness=np.log(4560 / 5000)) == 4
    assert nearest_option(day, expiry_years=0.25, log_moneyness=np.log(5300 / 5000)) == 6


def test_unknown_instrument_and_missing_day_are_clear_errors() -> None:
    opt = _option(1, strike=4800, is_call=False, bid=40.0, ask=41.5)
    m = Market({D0: _day(D0, [opt], 5000, 5000)})
    with pytest.raises(BacktestError, match=r"instrument_id 999 is not among that day's options"):
        run_engine(m, _decision(D0, 999, 1, 1), BacktestConfig())
    with pytest.raises(BacktestError, match="no market data"):
        run_engine(m, _decision(D0 + dt.timedelta(days=9), 1, 1, 1), BacktestConfig())


# ---------------------------------------------------------------------------------------- signal
def test_zscores_use_past_residuals_only() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 3, 11))
    z = expanding_zscores(r, 10)
    assert np.isnan(z[:10]).all() and np.isfinite(z[10:]).all()
    t = 25
    assert z[t, 1, 4] == pytest.approx((r[t, 1, 4] - r[:t, 1, 4].mean()) / r[:t, 1, 4].std(ddof=1))
    r2 = r.copy()
    r2[t + 1 :] += rng.normal(5, 3, size=r2[t + 1 :].shape)
    z2 = expanding_zscores(r2, 10)
    assert np.array_equal(z[: t + 1], z2[: t + 1], equal_nan=True)
    assert not np.allclose(z[t + 1 :], z2[t + 1 :])


def test_half_life_of_an_ar1() -> None:
    rng = np.random.default_rng(2)
    phi = 0.8
    x = np.zeros((4000, 2))
    for t in range(1, len(x)):
        x[t] = phi * x[t - 1] + rng.normal(size=2)
    assert half_life(x) == pytest.approx(np.log(0.5) / np.log(phi), rel=0.08)
    assert half_life(rng.normal(size=(500, 3))) < 1.0


def test_config_toml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "bt.toml"
    p.write_text("[backtest]\nthreshold = 3\nretrain_every = 50\n[model]\nlatent = 2\n[train]\nepochs = 7\n")
    b, m, t = load_backtest_config(p, ["backtest.contracts=4", "train.refit=false"])
    assert (b.threshold, b.retrain_every, b.contracts, m.latent, t.epochs, t.refit) == (
        3.0,
        50,
        4.0,
        2,
        7,
        False,
    )
    assert t.lr == 1e-3 and t.patience == 15  # volfast train's CVAE defaults underneath
    with pytest.raises(BacktestError, match="unknown keys"):
        load_backtest_config(None, ["backtest.treshold=2"])
    with pytest.raises(BacktestError, match="threshold > 0"):
        load_backtest_config(None, ["backtest.threshold=-1"])


# --------------------------------------------------------------------------- synthetic walk-forward
TINY_CVAE = CVAEConfig(latent=3, hidden=16, layers=1)
TINY_TRAIN = TrainConfig(epochs=40, patience=40, schedule="cosine", refit=True, threads=1)
CFG = BacktestConfig(retrain_every=20, initial_train=16, min_history=5, threshold=2.0, max_hold_days=5)


@pytest.fixture(scope="session")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 small synthetic days through `volfast build` (serial executor)."""
    from volfast.pipeline.build import run_build
    from volfast.pipeline.config import BuildConfig, ExecutorConfig
    from volfast.synth import generate_days

    root = tmp_path_factory.mktemp("bt")
    generate_days(dt.date(2024, 1, 2), 48, root / "dbn", seed=5, scale="small")
    run_build(
        root / "dbn", root / "run", config=BuildConfig(executor=ExecutorConfig(kind="serial")), progress=False
    )
    return root / "run"


@pytest.fixture(scope="session")
def bt_result(built_run: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("bt_out")
    return backtest(built_run, config=CFG, model_config=TINY_CVAE, train_config=TINY_TRAIN, out=out), out


def test_synthetic_walk_forward_backtest(bt_result) -> None:  # type: ignore[no-untyped-def]
    res, out = bt_result
    sig = res.signal
    assert len(sig.fits) >= 3 and sig.fits[0]["in_sample"]
    for f in sig.fits[1:]:  # out-of-sample fits are trained only on days before the ones they score
        assert f["train_end"] < f["from"]
    ism, oos = res.metrics["in_sample"], res.metrics["out_of_sample"]
    assert ism["days"] == 16 and oos["days"] == len(sig.dates) - 16
    assert res.engine.trades.shape[0] > 0 and np.isfinite(res.metrics["all"]["sharpe"])
    daily = res.engine.daily
    parts = daily["pnl_option"] + daily["pnl_hedge"] - daily["pnl_spread"] - daily["pnl_commission"]
    assert np.allclose(parts, daily["pnl"]) and np.allclose(daily["equity"], daily["cash"] + daily["marks"])
    assert ism["pnl"] + oos["pnl"] == pytest.approx(daily["equity"].iloc[-1] - CFG.capital)
    hedged = ~daily["unhedged"]
    assert (daily.loc[hedged, "net_delta"].abs() < 1e-6).all()
    assert 0 <= oos["hit_rate"] <= 1 or np.isnan(oos["hit_rate"])
    assert {"daily.csv", "trades.csv", "signals.csv", "metrics.json", "metrics.md", "config.json"} <= {
        p.name for p in out.iterdir()
    }
    # the signal's residual really is observed - reconstruction, and trades follow the z threshold
    assert np.allclose(sig.residual, sig.observed - sig.recon)
    assert (res.decisions["z"].abs() >= CFG.threshold).all()


def test_walk_forward_has_no_look_ahead(built_run: Path) -> None:
    from volfast.surface import load_dataset

    ds = load_dataset(built_run)
    ds = ds.subset(ds.complete("cvae"))
    cut = 30
    ds2 = dataclasses.replace(ds, cvae=ds.cvae.copy())
    ds2.cvae[cut:] *= 1.15  # a different future
    fit = cvae_fitter(TINY_CVAE, dataclasses.replace(TINY_TRAIN, epochs=15, patience=15))
    a, b = walk_forward(ds, CFG, fit), walk_forward(ds2, CFG, fit)
    assert np.array_equal(a.residual[:cut], b.residual[:cut])
    assert np.array_equal(a.z[:cut], b.z[:cut], equal_nan=True)
    da, db = a.decisions(CFG), b.decisions(CFG)
    before = np.datetime64(ds.dates[cut], "D")
    pa = da[pd.to_datetime(da["date"]) < pd.Timestamp(before)]
    pb = db[pd.to_datetime(db["date"]) < pd.Timestamp(before)]
    pd.testing.assert_frame_equal(pa.reset_index(drop=True), pb.reset_index(drop=True))
    assert not np.allclose(a.residual[cut:], b.residual[cut:])


def test_cli_backtest(built_run: Path, tmp_path: Path) -> None:
    from volfast.cli import main

    args = ["backtest", "--data", str(built_run), "--out", str(tmp_path / "o")]
    sets = ["--set", "backtest.retrain_every=20", "--set", "backtest.initial_train=16", "--set",
            "backtest.min_history=5", "--set", "model.hidden=8", "--set", "train.epochs=10",
            "--set", "train.patience=10"]  # fmt: skip
    r = CliRunner().invoke(main, args + sets)
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())  # the file, not the console table
    assert {"in_sample", "out_of_sample"} <= set(metrics["periods"])
    assert all(metrics["periods"][p]["days"] > 0 for p in ("in_sample", "out_of_sample"))
    assert "| in_sample |" in (tmp_path / "o" / "metrics.md").read_text()
    r = CliRunner().invoke(main, args + ["--from", "2030-01-01"])
    assert r.exit_code != 0 and "period 2030-01-01 to ... has no valid days" in r.output


# ------------------------------------------------------------------------------------- bad inputs
def test_missing_stage_is_named(built_run: Path, tmp_path: Path) -> None:
    for stage in ("grids", "snapshots", "quotes"):
        run = tmp_path / stage
        shutil.copytree(built_run, run, ignore=shutil.ignore_patterns(stage))
        with pytest.raises(BacktestError, match=rf"{stage}.*volfast build --data DBN_DIR --out"):
            backtest(run, config=CFG, fitter=lambda ds, tr: lambda rows: ds.cvae[rows])
    with pytest.raises(BacktestError, match="not a folder"):
        backtest(tmp_path / "nope")


def test_missing_day_partition_is_named(built_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(built_run, run)
    victim = sorted((run / "snapshots").glob("date=*"))[3]
    shutil.rmtree(victim)
    with pytest.raises(BacktestError, match=rf"{victim.name}.*--date"):
        backtest(run, config=CFG, fitter=lambda ds, tr: lambda rows: ds.cvae[rows])


def test_too_few_valid_days(built_run: Path) -> None:
    with pytest.raises(BacktestError, match="needs more than initial_train=16"):
        backtest(built_run, config=CFG, end="2024-01-10", fitter=lambda ds, tr: lambda rows: ds.cvae[rows])


def test_model_that_does_not_match_the_dataset(built_run: Path, tmp_path: Path) -> None:
    from volfast.models.io import build_model, save_model

    save_model(tmp_path / "m23", "cvae", build_model("cvae", dataclasses.replace(TINY_CVAE, shape=(2, 11))))
    with pytest.raises(
        BacktestError, match=r"model grid \(2, 11\) does not match the dataset's CVAE grid \(3, 11\)"
    ):
        backtest(built_run, model=tmp_path / "m23")
    save_model(tmp_path / "pca", "pca", build_model("pca", _pca_config()))
    with pytest.raises(BacktestError, match="needs a cvae or cvae-conv model"):
        backtest(built_run, model=tmp_path / "pca")
    with pytest.raises(BacktestError, match="not a saved volfast model"):
        backtest(built_run, model=tmp_path)


def _pca_config():  # type: ignore[no-untyped-def]
    from volfast.models.pca import PCAConfig

    return PCAConfig()


def test_fixed_trained_model(built_run: Path, tmp_path: Path) -> None:
    from volfast.models.io import build_model, save_model

    model = build_model("cvae", TINY_CVAE)
    import torch

    from volfast.surface import load_dataset

    ds = load_dataset(built_run)
    ok = ds.complete("cvae")
    model.fit_stats(
        torch.as_tensor(ds.cvae[ok], dtype=torch.float32),
        torch.as_tensor(ds.cvae_expiry_years[ok], dtype=torch.float32),
    )
    save_model(tmp_path / "m", "cvae", model.eval())
    res = backtest(built_run, model=tmp_path / "m", config=CFG)
    assert len(res.signal.fits) == 1 and res.metrics["out_of_sample"]["days"] == int(ok.sum())
