"""``volfast demo``: volfast's main job, run for real on a built-in synthetic market.

The demo grows with the project; each stage joins it as it lands. Today: an ES-like option chain is priced
from a known volatility surface, its prices are rounded to the exchange tick, and the implied vols are
recovered, with the accuracy against the known truth and the throughput of each backend.
"""

from __future__ import annotations

import time

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


def run_demo(quotes: int = 200_000, seed: int = 0, threads: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    import volfast
    from volfast.info import cpu_model

    console = Console()
    chain = es_like_chain(quotes, seed)
    kw = {k: chain[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    price = volfast.black76_price(vol=chain["vol"], **kw)
    console.print(f"[bold]volfast demo[/bold]: {quotes:,} ES-like quotes on {cpu_model()}")

    table = Table(title="Black-76 implied vol: recover the true vols from exact prices")
    for col in ("backend", "quotes/s", "max |error| (vol)", "status ok"):
        table.add_column(col, justify="right")
    backends = ["cpp", "numba"] if _numba_available() else ["cpp"]
    for backend in backends:
        volfast.implied_vol(price[:1000], **{k: v[:1000] for k, v in kw.items()}, backend=backend)  # warm-up
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


def _numba_available() -> bool:
    try:
        from volfast.iv import _numba  # noqa: F401

        return True
    except ImportError:
        return False
