"""``volfast demo``: volfast's main job, run for real on a built-in synthetic market.

The demo grows with the project; each stage joins it as it lands. Today:

1. implied vol: an ES-like option chain is priced from a known volatility surface, its prices are rounded to
   the exchange tick, and the implied vols are recovered, with the accuracy against the known truth and the
   throughput of each backend;
2. surfaces: a few days of the synthetic ES market are written as DBN files (``volfast synth``), built into
   snapshots, forwards, vols, SVI fits and grids (``volfast build``), and the results are checked against the
   generator's truth (forward error, fitted vol error, share of fits inside bid/ask).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np


def es_like_chain(n_quotes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Quotes of an ES-like chain: F near 5000, strikes every 5 points from -60% to +20%, expiries 1 day
    to 3 years, a skewed smile, calls above the forward and puts below (the liquid side)."""
    rng = np.random.default_rng(seed)
    expiries = np.array([1, 2, 3, 5, 7, 14, 21, 30, 45, 60, 91, 122, 182, 273, 365, 547, 730, 1095]) / 365.0
    T = rng.choice(expiries, size=n_quotes)
    F = 5000.0 * np.exp(rng.normal(0.0, 0.002, size=n_quotes))
    K = np.round(F * rng.uniform(0.4, 1.2, size=n_quotes) / 5.0) * 5.0
    k = np.log(K / F)
    atm = 0.16 + 0.02 * np.sqrt(T)
    vol = atm - 0.25 * k / np.sqrt(np.maximum(T, 0.02)) * 0.1 + 0.4 * k * k
    vol = np.clip(vol, 0.05, 2.0)
    is_call = K >= F
    D = np.exp(-0.045 * T)
    return {
        "forward": F,
        "strike": K,
        "expiry_years": T,
        "vol": vol,
        "is_call": is_call,
        "discount_factor": D,
    }


class _BlackInputs(TypedDict):
    """The Black-76 keyword arguments of a chain, one array each."""

    forward: np.ndarray
    strike: np.ndarray
    expiry_years: np.ndarray
    is_call: np.ndarray
    discount_factor: np.ndarray


def _black_inputs(chain: Mapping[str, np.ndarray], rows: slice = slice(None)) -> _BlackInputs:
    """``forward, strike, expiry_years, is_call, discount_factor`` of ``chain[rows]`` (views, no copies)."""
    return _BlackInputs(
        forward=chain["forward"][rows],
        strike=chain["strike"][rows],
        expiry_years=chain["expiry_years"][rows],
        is_call=chain["is_call"][rows],
        discount_factor=chain["discount_factor"][rows],
    )


def run_demo(
    quotes: int = 200_000,
    seed: int = 0,
    threads: int | None = None,
    *,
    out: str | None = "volfast-demo",
    days: int = 5,
) -> None:
    from rich.console import Console
    from rich.table import Table

    import volfast
    from volfast.info import cpu_model

    console = Console()
    chain = es_like_chain(quotes, seed)
    kw = _black_inputs(chain)
    price = volfast.black76_price(vol=chain["vol"], **kw)
    console.print(f"[bold]volfast demo[/bold]: {quotes:,} ES-like quotes on {cpu_model()}")

    table = Table(title="Black-76 implied vol: recover the true vols from exact prices")
    for col in ("backend", "quotes/s", "max |error| (vol)", "status ok"):
        table.add_column(col, justify="right")
    backends = ["cpp", "numba"] if _numba_available() else ["cpp"]
    for backend in backends:
        volfast.implied_vol(price[:1000], **_black_inputs(chain, slice(1000)), backend=backend)  # warm-up
        t0 = time.perf_counter()
        res = volfast.implied_vol(price, **kw, backend=backend, threads=threads)
        dt = time.perf_counter() - t0
        ok = res.status == volfast.IVStatus.OK
        err = np.max(np.abs(res.iv[ok] - chain["vol"][ok])) if ok.any() else float("nan")
        table.add_row(backend, f"{quotes / dt:,.0f}", f"{err:.2e}", f"{ok.mean():.2%}")
    console.print(table)

    # Tick-rounded quotes, as an exchange shows them: what the vol of a tick is worth.
    tick = np.where(price < 5.0, 0.05, 0.25)
    bid = np.floor(price / tick) * tick
    ask = bid + tick
    vb = volfast.implied_vol(bid, **kw, threads=threads)
    va = volfast.implied_vol(ask, **kw, threads=threads)
    both = (vb.status == 0) & (va.status == 0)
    width = (va.iv - vb.iv)[both] * 100
    console.print(
        f"Quotes rounded to ES ticks: {both.mean():.1%} have both sides invertible; "
        f"median bid/ask width {np.median(width):.3f} vol points; statuses of bids: "
        + ", ".join(
            f"{volfast.IVStatus(s).name}={c}"
            for s, c in zip(*np.unique(vb.status, return_counts=True), strict=True)
        )
    )
    if out is not None and days > 0:
        surfaces_demo(console, out, days=days, seed=seed)


def surfaces_demo(console: Any, out: str, *, days: int, seed: int) -> dict[str, float]:
    """Synthesise ``days`` trading days into ``out/data``, build them into ``out/build`` and print how the
    forwards and the fitted surfaces compare with the generator's truth. Reuses finished days."""
    import datetime as dt
    from pathlib import Path

    import pyarrow.parquet as pq
    from rich.table import Table

    from volfast.pipeline import BuildConfig, run_build
    from volfast.pipeline.config import ExecutorConfig
    from volfast.surface import read_output
    from volfast.synth import generate_days
    from volfast.synth.calendar import trading_days

    root = Path(out)
    data, build = root / "data", root / "build"
    wanted = trading_days(dt.date(2024, 3, 4), days)
    have = {p.name[5:] for p in (data / "truth").glob("date=*")} if (data / "truth").is_dir() else set()
    t0 = time.perf_counter()
    if any(d.isoformat() not in have for d in wanted):
        generate_days(wanted[0], days, data, seed=seed, scale="small")
    t_synth = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = run_build(
        data, build, config=BuildConfig(seed=seed, executor=ExecutorConfig(kind="serial")), dates=wanted
    )
    t_build = time.perf_counter() - t0
    console.print(
        f"\n[bold]Surfaces[/bold] for {days} synthetic days in {root}/: synth {t_synth:.1f} s, "
        f"build (snapshot, forwards, vols, SVI, grids) {t_build:.1f} s; "
        f"{len(summary.ok)} built, {len(summary.skipped)} reused, {len(summary.invalid)} invalid, "
        f"{len(summary.failed)} failed"
    )
    fwd = read_output(build, "forwards").to_pandas()
    quotes = read_output(build, "quotes").to_pandas()
    f_err, v_err = [], []
    for d in sorted(set(fwd["date"])):
        truth = pq.read_table(data / "truth" / f"date={d.isoformat()}" / "part-0.parquet").to_pandas()
        exp = truth[truth.kind == "expiry"].set_index("expiration")["forward"]
        f = fwd[(fwd["date"] == d) & fwd["forward"].notna()]
        f_true = exp.reindex(f["expiration"]).to_numpy()
        f_err.append(np.abs(f["forward"].to_numpy() / f_true - 1.0) * 1e4)
        q = quotes[(quotes["date"] == d) & quotes["used"] & quotes["fit_iv"].notna()]
        vol_true = truth[truth.kind == "option"].set_index("instrument_id")["vol"]
        v_err.append((q["fit_iv"].to_numpy() - vol_true.reindex(q["instrument_id"]).to_numpy()) * 100)
    fe = np.concatenate(f_err) if f_err else np.array([np.nan])
    ve = np.concatenate(v_err) if v_err else np.array([np.nan])
    used = quotes[quotes["used"]]
    figures = {
        "forward_err_median_bp": float(np.nanmedian(fe)),
        "forward_err_p95_bp": float(np.nanquantile(fe, 0.95)),
        "fit_vs_truth_rmse_volpts": float(np.sqrt(np.nanmean(ve**2))),
        "inside_bid_ask": float(used["inside_bid_ask"].mean()) if len(used) else float("nan"),
    }
    table = Table(title="Fitted surfaces against the generator's truth")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "forward error, median / 95th pct (bp)",
        f"{figures['forward_err_median_bp']:.2f} / {figures['forward_err_p95_bp']:.2f}",
    )
    table.add_row(
        "SVI fit vs true vol at the quotes, RMSE (vol points)", f"{figures['fit_vs_truth_rmse_volpts']:.3f}"
    )
    table.add_row("fitted vol inside the quote's bid/ask", f"{figures['inside_bid_ask']:.1%}")
    table.add_row("quotes used in fits", f"{len(used):,}")
    console.print(table)
    return figures


def _numba_available() -> bool:
    try:
        from volfast.iv import _numba  # noqa: F401

        return True
    except ImportError:
        return False
