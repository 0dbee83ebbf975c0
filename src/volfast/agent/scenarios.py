"""The latent-energy hedger on hallucinated stress scenarios: LSTM rollouts with training-residual noise
(and, beside them, the same rollouts with a directed crash shock on the first step), decoded to surfaces
and turned into a market the hedger trades with the rule of :mod:`volfast.agent.hedge`.

Scenario market rule (everything fitted on days before the encoder's test period; start days in it):

- **Futures**: F_t = F_{t-1} exp(a + b x_t + s eps_t), where x_t is the front ATM vol surprise of step t
  (log ATM vol of the decoded latent z_t minus that of the decoded LSTM prediction for it: the vol
  innovation, not the model's expected mean reversion, which carries no return in the leverage relation),
  (a, b, s) the OLS intercept, slope and residual std of the front futures' daily log return on the same
  surprise over consecutive training days (the synthetic market's leverage relation, measured),
  eps_t ~ N(0, 1) (0 when ``futures_noise`` is off). One futures price; an option expiry's forward
  keeps its start-day ratio to it. The directed shock is a surprise too: it moves the futures.
- **Puts**: the start day's listed puts (two-sided quote with a mid implied vol). Vol at step t =
  the put's start mid IV + [decoded surface at step t at (ln(K/F_e,t), tau_t)] - [decoded surface at step
  0 at (ln(K/F_e,0), tau_0)], the surface linear in ln(K/F) and in total variance across the grid's
  expiries, flat outside them (tau clamped to the grid), floored at 1%; tau_t = tau_0 - calendar days
  elapsed / 365 (ACT/365, trading days from the CME calendar); mid = Black-76 at that vol with the start
  day's discount factor. So a scenario whose surface and futures do not move prices every put at its
  start mid (no ageing) or at its start vol (with ageing).
- **Quotes**: bid, ask = mid (1 -/+ s/2), s the median relative spread (ask - bid) / mid of the training
  days' put quotes in the same (ln(K/F), days to expiry) bucket (all training puts where a bucket is
  empty); no tick rounding.
- **Signal**: the energy of each scenario step (same mode, mean, covariance and threshold as the
  historical hedger); step 0 is the start day's observed energy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volfast.agent._config import AgentError, load_section, write_json
from volfast.agent.energy import (
    EnergyConfig,
    energy_of,
    energy_reference,
    latent_energy,
    trailing_change,
)
from volfast.agent.hedge import HedgeConfig, Market, _front, contracts_for, read_market
from volfast.agent.stress import crash_direction, residual_std
from volfast.agent.world import World, load_world, surface_features

__all__ = [
    "FuturesRelation",
    "ScenarioConfig",
    "SpreadTable",
    "fit_futures_relation",
    "fit_spread_table",
    "run_scenarios",
    "scenario_prices",
    "simulate_batch",
]

K_EDGES = np.array([-0.2, -0.1, -0.05, 0.0])  # ln(K/F) bucket edges of the spread table
D_EDGES = np.array([7.0, 14.0, 30.0, 60.0])  # days-to-expiry bucket edges


@dataclasses.dataclass(frozen=True)
class ScenarioConfig:
    scenarios: int = 1000  # scenarios per set, spread evenly over the start days
    horizon: int = 20  # trading days per scenario
    date: str = ""  # one start day YYYY-MM-DD (in the test period); "" = every complete test day
    magnitude: float = 3.0  # the shocked set: this x the training crash-day latent move on step 1 (0: none)
    crash_quantile: float = 0.95  # crash days defining the shock direction (as in [stress])
    futures_noise: bool = True  # add the regression's residual noise to the futures returns
    batch: int = 4096  # scenarios decoded per batch
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenarios < 1 or self.horizon < 1 or self.batch < 1:
            raise ValueError("ScenarioConfig: scenarios, horizon and batch must be >= 1")
        if self.magnitude < 0 or not 0.0 < self.crash_quantile < 1.0:
            raise ValueError("ScenarioConfig: need magnitude >= 0 and 0 < crash_quantile < 1")


@dataclasses.dataclass(frozen=True)
class FuturesRelation:
    """Daily futures log return = intercept + slope x dlog(front ATM vol) + resid_sd x N(0, 1)."""

    intercept: float
    slope: float
    resid_sd: float
    n: int  # training day pairs it was fitted on
    r2: float


@dataclasses.dataclass(frozen=True)
class SpreadTable:
    """Median relative spread (ask - bid) / mid of training put quotes by (ln(K/F), days) bucket."""

    median: np.ndarray  # (len(K_EDGES) + 1, len(D_EDGES) + 1), NaN where the bucket is empty
    overall: float
    n: int

    def lookup(self, log_moneyness: np.ndarray, days: np.ndarray) -> np.ndarray:
        i = np.searchsorted(K_EDGES, np.asarray(log_moneyness), side="right")
        j = np.searchsorted(D_EDGES, np.asarray(days), side="right")
        s = self.median[i, j]
        return np.asarray(np.where(np.isfinite(s), s, self.overall))


@torch.no_grad()
def _predict(world: World, row: int) -> np.ndarray:
    t = torch.as_tensor(world.window_at(row)[None], dtype=torch.float32, device=world.device)
    return np.asarray(world.lstm(t)[0].double().cpu().numpy())


def vol_surprise(world: World, z: np.ndarray, pred: np.ndarray, row: int) -> np.ndarray:
    """log front ATM vol of the decoded latents ``z`` (N, L) minus that of the LSTM's predictions ``pred``
    (N, L) for them, both decoded at day ``row``'s grid expiries: the unexpected part of the vol move."""
    y = np.asarray(world.ds.cvae_expiry_years[row], dtype=np.float64)
    yy = np.broadcast_to(y, (z.shape[0], y.size))
    a = surface_features(world.decode(z, yy), world.k, yy)["atm"]
    b = surface_features(world.decode(pred, yy), world.k, yy)["atm"]
    return np.asarray(np.log(np.maximum(a, 1e-4) / np.maximum(b, 1e-4)))


def fit_futures_relation(world: World, mkt: Market, roll_days: float) -> FuturesRelation:
    """OLS of the front futures' daily log return on the front ATM vol surprise (:func:`vol_surprise`:
    today's encoded latent against the LSTM's prediction from yesterday's window), over consecutive
    complete training days (the same futures contract on both days)."""
    seg = world.segments()
    tr = world.train_mask()
    rows = np.flatnonzero(tr[1:] & tr[:-1] & (seg[1:] == seg[:-1])) + 1
    x, y = [], []
    for r in rows:
        d0, d1 = (np.datetime64(world.ds.dates[i], "D") for i in (r - 1, r))
        u = _front(mkt, d0, roll_days)
        if u is None or d1 not in mkt.futures[u]:
            continue
        ri = int(r)
        x.append(vol_surprise(world, np.asarray(world.z[ri])[None], _predict(world, ri - 1)[None], ri)[0])
        y.append(np.log(mkt.futures[u][d1] / mkt.futures[u][d0]))
    if len(x) < 5:
        raise AgentError(
            f"{len(x)} consecutive training day pairs with futures prices; need at least 5 to fit the "
            "futures / ATM vol relation of the scenario market"
        )
    xa, ya = np.asarray(x), np.asarray(y)
    a_mat = np.column_stack([np.ones_like(xa), xa])
    coef, *_ = np.linalg.lstsq(a_mat, ya, rcond=None)
    res = ya - a_mat @ coef
    sd = float(np.std(res, ddof=2)) if xa.size > 2 else 0.0
    tot = float(np.sum((ya - ya.mean()) ** 2))
    return FuturesRelation(
        intercept=float(coef[0]),
        slope=float(coef[1]),
        resid_sd=sd,
        n=int(xa.size),
        r2=1.0 - float(np.sum(res**2)) / tot if tot > 0 else float("nan"),
    )


def fit_spread_table(mkt: Market, before: np.datetime64) -> SpreadTable:
    """Spread table from the two-sided put quotes of days before ``before`` (the test period start)."""
    q = mkt.puts
    day = np.asarray(q["date"].to_numpy(), dtype="datetime64[D]")
    bid, ask = q["bid"].to_numpy(float), q["ask"].to_numpy(float)
    fwd, k = q["forward"].to_numpy(float), q["strike"].to_numpy(float)
    days = (np.asarray(q["exp_day"].to_numpy(), dtype="datetime64[D]") - day).astype(np.float64)
    ok = (day < before) & (bid > 0) & (ask > bid) & (fwd > 0) & (days > 0)
    if ok.sum() < 10:
        raise AgentError(
            f"{int(ok.sum())} two-sided training put quotes before {before}; need at least 10 for the "
            "scenario market's spreads"
        )
    rel = (ask - bid)[ok] / (0.5 * (ask + bid)[ok])
    i = np.searchsorted(K_EDGES, np.log(k[ok] / fwd[ok]), side="right")
    j = np.searchsorted(D_EDGES, days[ok], side="right")
    med = np.full((K_EDGES.size + 1, D_EDGES.size + 1), np.nan)
    for a in range(med.shape[0]):
        for b in range(med.shape[1]):
            m = (i == a) & (j == b)
            if m.any():
                med[a, b] = float(np.median(rel[m]))
    return SpreadTable(median=med, overall=float(np.median(rel)), n=int(ok.sum()))


@dataclasses.dataclass
class Universe:
    """The start day's listed puts the scenario market quotes, sorted by (expiry, strike)."""

    symbols: np.ndarray  # (P,) raw_symbol
    strike: np.ndarray  # (P,)
    exp_day: np.ndarray  # (P,) datetime64[D]
    years: np.ndarray  # (P,) expiry year fractions at the start (ACT/365)
    basis: np.ndarray  # (P,) forward of its expiry / the front futures price at the start
    discount: np.ndarray  # (P,)
    iv0: np.ndarray  # (P,) start mid implied vol


def start_universe(
    quotes: Any, day: np.datetime64, futures0: float, cfg: HedgeConfig, horizon_days: int
) -> Universe:
    """``quotes``: put quotes (date, raw_symbol, exp_day, strike, bid, ask, forward, expiry_years,
    discount_factor, mid_iv). Puts on ``day`` with a two-sided quote and a mid IV whose expiry can fall
    in [min_days, max_days] during the scenario (or the configured ``put_symbol``)."""
    q = quotes[quotes["date"] == day]
    q = q[(q["bid"] > 0) & (q["ask"] > 0) & np.isfinite(q["mid_iv"]) & (q["forward"] > 0)]
    exp = np.asarray(q["exp_day"].to_numpy(), dtype="datetime64[D]")
    dte = (exp - day).astype(np.int64)
    keep = (dte >= cfg.min_days) & (dte <= cfg.max_days + horizon_days)
    if cfg.put_symbol:
        keep = (q["raw_symbol"] == cfg.put_symbol).to_numpy()
    q = q[keep].sort_values(["exp_day", "strike"], kind="stable")
    return Universe(
        symbols=q["raw_symbol"].to_numpy(str),
        strike=q["strike"].to_numpy(float),
        exp_day=np.asarray(q["exp_day"].to_numpy(), dtype="datetime64[D]"),
        years=q["expiry_years"].to_numpy(float),
        basis=q["forward"].to_numpy(float) / futures0,
        discount=q["discount_factor"].to_numpy(float),
        iv0=q["mid_iv"].to_numpy(float),
    )


def _surface_at(
    vols: np.ndarray, k_grid: np.ndarray, y_grid: np.ndarray, k: np.ndarray, tau: np.ndarray
) -> np.ndarray:
    """Vols (N, P) of surfaces ``vols`` (N, E, K) at log-moneyness ``k`` (N, P) and years ``tau`` (P,):
    linear in k (flat outside), linear in total variance across expiries, tau clamped to the grid."""
    kc = np.clip(k, k_grid[0], k_grid[-1])
    j = np.clip(np.searchsorted(k_grid, kc) - 1, 0, k_grid.size - 2)
    w = (kc - k_grid[j]) / (k_grid[j + 1] - k_grid[j])
    n_idx = np.arange(vols.shape[0])[:, None]
    # smile of every expiry at each put's k: (N, E, P)
    sm = np.stack(
        [(1 - w) * vols[n_idx, e, j] + w * vols[n_idx, e, j + 1] for e in range(y_grid.size)], axis=1
    )
    tc = np.clip(tau, y_grid[0], y_grid[-1])
    i = np.clip(np.searchsorted(y_grid, tc) - 1, 0, y_grid.size - 2)
    u = (tc - y_grid[i]) / (y_grid[i + 1] - y_grid[i])
    p_idx = np.arange(tau.size)
    w0 = sm[:, i, p_idx] ** 2 * y_grid[i]
    w1 = sm[:, i + 1, p_idx] ** 2 * y_grid[i + 1]
    return np.asarray(np.sqrt(np.maximum((1 - u) * w0 + u * w1, 0.0) / tc))


def scenario_prices(
    uni: Universe,
    futures: np.ndarray,
    vols: np.ndarray,
    k_grid: np.ndarray,
    y_grid: np.ndarray,
    elapsed_years: np.ndarray,
    spreads: SpreadTable,
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask (N, T, P) of the universe's puts along scenarios: ``futures`` (N, T) front futures
    prices, ``vols`` (N, T, E, K) decoded surfaces on ``k_grid`` (K,) x ``y_grid`` (E,),
    ``elapsed_years`` (T,) calendar years since the start (0 at step 0). See the module docstring."""
    from volfast import black76_price

    n, t_n = futures.shape
    p_n = uni.strike.size
    bid, ask = np.zeros((n, t_n, p_n)), np.zeros((n, t_n, p_n))
    if p_n == 0:
        return bid, ask
    k0 = np.log(uni.strike / (futures[:, :1] * uni.basis))  # (N, P)
    tau0 = uni.years
    v00 = _surface_at(vols[:, 0], k_grid, y_grid, k0, tau0)
    for t in range(t_n):
        fwd = futures[:, t : t + 1] * uni.basis  # (N, P)
        k = np.log(uni.strike / fwd)
        tau = uni.years - elapsed_years[t]
        live = tau > 0
        tau_c = np.where(live, tau, 1e-9)
        vol = np.maximum(uni.iv0 + _surface_at(vols[:, t], k_grid, y_grid, k, tau_c) - v00, 0.01)
        mid = np.where(
            live,
            black76_price(
                forward=fwd,
                strike=uni.strike,
                expiry_years=tau_c,
                vol=vol,
                is_call=False,
                discount_factor=uni.discount,
            ),
            np.maximum(uni.strike - fwd, 0.0),
        )
        rel = spreads.lookup(k, np.broadcast_to(tau * 365.0, k.shape))
        bid[:, t] = np.where(live, mid * (1 - 0.5 * rel), 0.0)
        ask[:, t] = np.where(live, mid * (1 + 0.5 * rel), 0.0)
    return bid, ask


def simulate_batch(
    futures: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    signal: np.ndarray,
    dte: np.ndarray,
    strike: np.ndarray,
    expiry_id: np.ndarray,
    cfg: HedgeConfig,
) -> dict[str, np.ndarray]:
    """:func:`volfast.agent.hedge.simulate`'s rule and accounting over N scenarios at once.

    Parameters
    ----------
    futures : (N, T) futures prices (index points), one contract throughout.
    bid, ask : (N, T, P) put quotes (index points); a put with bid or ask <= 0 has no two-sided quote.
    signal : (N, T) energy alarm per step.
    dte : (T, P) calendar days to each put's expiry at each step.
    strike : (P,) strikes; ``expiry_id`` (P,) one integer per expiry (puts sorted by expiry, strike).

    Returns per-step dollar arrays (N, T): unhedged, hedged, put_pnl, costs, premium, contracts; and per
    scenario: trades (round trips opened), round_trip (sum of (bid_exit - ask_entry) x mult x contracts
    over closed trades), skipped (alarm days with no put bought).
    """
    n, t_n = futures.shape
    mult = cfg.multiplier
    unhedged, put_pnl, costs, premium, held = (np.zeros((n, t_n)) for _ in range(5))
    trades, skipped, round_trip = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n)
    is_open = np.zeros(n, bool)
    last_exit = np.full(n, -(10**9), np.int64)  # step of each scenario's last sale (cool-down)
    pidx = np.zeros(n, np.int64)
    n_c, mark, ask_in, days = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n, np.int64)
    p_n = strike.size
    for t in range(t_n):
        if t > 0:
            unhedged[:, t] = cfg.futures * mult * (futures[:, t] - futures[:, t - 1])
        b, a = bid[:, t], ask[:, t]  # (N, P)
        o = np.flatnonzero(is_open)
        if o.size:
            qb, qa = b[o, pidx[o]], a[o, pidx[o]]
            quoted = (qb > 0) & (qa > 0)
            new_mark = np.where(quoted, 0.5 * (qb + qa), mark[o])
            expired = dte[t, pidx[o]] <= 0  # unsold at expiry: settles at intrinsic (as in hedge.simulate)
            intrinsic = np.maximum(strike[pidx[o]] - futures[o, t], 0.0)
            new_mark = np.where(expired, intrinsic, new_mark)
            qb = np.where(expired, intrinsic, qb)
            quoted |= expired
            put_pnl[o, t] = n_c[o] * mult * (new_mark - mark[o])
            mark[o] = new_mark
            days[o] += 1
            want = ((days[o] >= cfg.hold_days) & ~signal[o, t]) | (dte[t, pidx[o]] <= cfg.exit_days)
            if cfg.max_hold_days > 0:
                want |= days[o] >= cfg.max_hold_days
            out = want & quoted
            oo = o[out]
            costs[oo, t] += n_c[oo] * mult * (mark[oo] - qb[out])
            round_trip[oo] += n_c[oo] * mult * (qb[out] - ask_in[oo])
            is_open[oo] = False
            last_exit[oo] = t
        cooling = (t - last_exit <= cfg.cooldown_days) if cfg.cooldown_days > 0 else np.zeros(n, bool)
        skipped[~is_open & signal[:, t] & cooling] += 1
        want_in = ~is_open & signal[:, t] & ~cooling & (t < t_n - 1)
        w = np.flatnonzero(want_in)
        if w.size and p_n:
            d = dte[t]
            ok = (b[w] > 0) & (a[w] > 0)  # (W, P)
            if not cfg.put_symbol:  # a named put is bought whatever its expiry, as in hedge.choose_put
                ok &= (d >= cfg.min_days) & (d <= cfg.max_days)
            gap = np.where(ok, np.abs(d - cfg.target_days).astype(np.float64), np.inf)
            first = np.argmin(gap, axis=1)
            has = np.isfinite(gap[np.arange(w.size), first])
            ok &= expiry_id[None, :] == expiry_id[first][:, None]
            target = futures[w, t] * (1 - cfg.otm)
            dist = np.where(ok, np.abs(strike[None, :] - target[:, None]), np.inf)
            pick = np.argmin(dist, axis=1)
            pa = a[w, pick]
            nc = contracts_for(
                cfg,
                forward=futures[w, t],
                strike=strike[pick],
                ask=np.where(has, pa, np.inf),
                spent=premium[w, : t + 1].sum(axis=1),  # a scenario is shorter than the 365-day window
            )
            buy = has & (nc >= 1)
            skipped[w[~buy]] += 1
            wb, pk, pab, ncb = w[buy], pick[buy], pa[buy], nc[buy]
            mid = 0.5 * (b[wb, pk] + pab)
            costs[wb, t] += ncb * mult * (pab - mid)
            premium[wb, t] += ncb * mult * pab
            is_open[wb], pidx[wb], n_c[wb], mark[wb], ask_in[wb], days[wb] = True, pk, ncb, mid, pab, 0
            trades[wb] += 1
        elif w.size:
            skipped[w] += 1
        held[:, t] = np.where(is_open, n_c, 0.0)
    return {
        "unhedged": unhedged,
        "hedged": unhedged + put_pnl - costs,
        "put_pnl": put_pnl,
        "costs": costs,
        "premium": premium,
        "contracts": held,
        "trades": trades,
        "round_trip": round_trip,
        "skipped": skipped,
    }


@torch.no_grad()
def rollout(
    world: World, row: int, n: int, horizon: int, sd: np.ndarray, shock: np.ndarray, gen: torch.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` LSTM rollouts of ``horizon`` steps from day ``row`` with residual noise ``sd`` (L,), ``shock``
    (L,) added to step 1. Returns latents (n, horizon + 1, L) (step 0: the day's own) and the LSTM's
    predicted next latent at each step (n, horizon + 1, L)."""
    lat = world.z.shape[1]
    win = torch.as_tensor(world.window_at(row), dtype=torch.float32, device=world.device)
    w = win[None].expand(n, -1, -1).clone()
    sdt = torch.as_tensor(sd, dtype=torch.float32, device=world.device)
    sh = torch.as_tensor(shock, dtype=torch.float32, device=world.device)
    zs, preds = [w[:, -1]], []
    for t in range(horizon):
        pred = world.lstm(w)
        preds.append(pred)
        nxt = pred + sdt * torch.randn(n, lat, generator=gen).to(world.device)
        if t == 0:
            nxt = nxt + sh
        zs.append(nxt)
        w = torch.cat([w[:, 1:], nxt[:, None]], dim=1)
    preds.append(world.lstm(w))
    z = torch.stack(zs, dim=1).double().cpu().numpy()
    p = torch.stack(preds, dim=1).double().cpu().numpy()
    return z, p


def _quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    return {f"q{int(q * 100):02d}": float(np.quantile(x, q)) for q in qs} | {"mean": float(np.mean(x))}


def _es(x: np.ndarray, q: float = 0.05) -> float:
    """Expected shortfall: mean of the worst ``q`` fraction (dollars, negative = loss)."""
    k = max(1, int(np.ceil(q * x.size)))
    return float(np.mean(np.sort(x)[:k]))


def summarise(tot: dict[str, np.ndarray]) -> dict[str, Any]:
    """Distribution of per-scenario totals (dollars over the horizon)."""
    u, h = tot["unhedged"], tot["hedged"]
    traded = tot["trades"] > 0
    overlay = h - u  # put PnL - spread costs
    worst = u <= np.quantile(u, 0.05)
    return {
        "scenarios": int(u.size),
        "hedged_fraction": float(traded.mean()),
        "mean_days_hedged": float(np.mean(tot["days_hedged"])) if "days_hedged" in tot else float("nan"),
        "unhedged": _quantiles(u) | {"es05": _es(u)},
        "hedged": _quantiles(h) | {"es05": _es(h)},
        "p_hedge_pays": float(np.mean(overlay[traded] > 0)) if traded.any() else float("nan"),
        "p_hedged_beats_unhedged": float(np.mean(overlay > 0)),
        "mean_overlay": float(overlay.mean()),
        "mean_overlay_when_hedged": float(overlay[traded].mean()) if traded.any() else float("nan"),
        "mean_spread_cost": float(tot["costs"].mean()),
        "mean_premium": float(tot["premium"].mean()),
        "worst5_unhedged_mean": float(u[worst].mean()),
        "worst5_hedged_mean": float(h[worst].mean()),
    }


def _put_quotes(build: Path, days: list[np.datetime64]) -> Any:
    import pandas as pd

    from volfast.surface import read_output

    cols = ["date", "raw_symbol", "expiration", "expiry_years", "strike", "is_call", "bid", "ask"]
    cols += ["forward", "discount_factor", "mid_iv"]
    q = read_output(build, "quotes").to_pandas()[cols]
    q = q[~q["is_call"]].copy()
    q["date"] = np.asarray(q["date"].to_numpy(), dtype="datetime64[ns]").astype("datetime64[D]")
    q["exp_day"] = np.asarray(q["expiration"].dt.tz_convert(None).to_numpy(), dtype="datetime64[ns]").astype(
        "datetime64[D]"
    )
    q = q[q["date"].isin(pd.Index(np.asarray(days, dtype="datetime64[ns]")))]
    q["date"] = np.asarray(q["date"].to_numpy(), dtype="datetime64[D]")
    return q


def run_scenarios(
    run: str | os.PathLike[str],
    build: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scenarios: int | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    log: Any = None,
) -> dict[str, Any]:
    """``volfast hedge --scenarios N``: the hedger on LSTM scenarios (``lstm``: residual noise;
    ``shocked``: plus a directed crash shock on step 1) from every complete test day (or ``date``).

    ``overrides``: ``scenarios.KEY=VALUE`` set :class:`ScenarioConfig`, other ``KEY=VALUE`` the
    :class:`~volfast.agent.hedge.HedgeConfig` (as for ``volfast hedge``). Writes ``OUT/scenarios.parquet``
    (per-scenario totals, dollars) and ``OUT/scenarios.json`` (calibration and distributions)."""
    import pyarrow as pa

    from volfast.io.output import write_parquet_atomic
    from volfast.synth.calendar import trading_days

    say = log or (lambda s: None)
    s_over = [o for o in overrides if o.strip().startswith("scenarios.")]
    e_over = [o for o in overrides if o.strip().startswith("energy.")]
    h_over = [o for o in overrides if not o.strip().startswith(("scenarios.", "energy."))]
    scfg = load_section(ScenarioConfig, "scenarios", config_path, s_over)
    if scenarios is not None:
        scfg = dataclasses.replace(scfg, scenarios=scenarios)
    cfg = load_section(HedgeConfig, "hedge", config_path, h_over)
    ecfg = load_section(EnergyConfig, "energy", config_path, e_over)
    root = Path(build)
    mkt = read_market(root)
    world = load_world(run, data=root, device=device)
    test_start = np.datetime64(world.split.test_start, "D")
    en = latent_energy(world, ecfg)
    mean, cov = energy_reference(world, ecfg)
    rel = fit_futures_relation(world, mkt, cfg.roll_days)
    spreads = fit_spread_table(mkt, test_start)
    sd = residual_std(world)
    direction, crash_rows = crash_direction(world, scfg.crash_quantile)
    if scfg.date:
        d0 = np.datetime64(scfg.date, "D")
        if d0 < test_start:
            raise AgentError(
                f"scenarios.date {scfg.date} is before the test period ({world.split.test_start}): "
                "results are out of sample only"
            )
        rows = np.flatnonzero((world.ds.dates == d0) & world.ok)
        if rows.size == 0:
            raise AgentError(f"scenarios.date {scfg.date}: not a complete day of {root}")
    else:
        rows = np.flatnonzero(world.test_mask())
    rows = np.array([r for r in rows if _front(mkt, np.datetime64(world.ds.dates[r], "D"), cfg.roll_days)])
    if rows.size == 0:
        raise AgentError(f"{root}: no complete test-period day with a futures price to start scenarios from")
    per = np.diff(np.linspace(0, scfg.scenarios, rows.size + 1).round().astype(np.int64))
    quotes = _put_quotes(root, [np.datetime64(world.ds.dates[r], "D") for r in rows])
    sets = {"lstm": 0.0} | ({"shocked": scfg.magnitude} if scfg.magnitude > 0 else {})
    gen = torch.Generator(device="cpu").manual_seed(scfg.seed)
    rng = np.random.default_rng(scfg.seed)
    k_grid = world.k
    keys = ("unhedged", "hedged", "put_pnl", "costs", "premium")
    extra = ("trades", "days_hedged", "start")
    results: dict[str, dict[str, list[Any]]] = {s: {k: [] for k in (*keys, *extra)} for s in sets}
    empty_days: list[str] = []
    for r, m in zip(rows, per, strict=True):
        if m == 0:
            continue
        day = np.datetime64(world.ds.dates[r], "D")
        u = _front(mkt, day, cfg.roll_days)
        assert u is not None
        f0 = mkt.futures[u][day]
        cal = np.array(trading_days(dt.date.fromisoformat(str(day)), scfg.horizon + 1), dtype="datetime64[D]")
        elapsed = (cal - day).astype(np.int64)  # calendar days since the start
        uni = start_universe(quotes, day, f0, cfg, int(elapsed[-1]))
        if uni.strike.size == 0:
            empty_days.append(str(day))
        y_grid = np.asarray(world.ds.cvae_expiry_years[r], dtype=np.float64)
        dte = (uni.exp_day[None, :] - cal[:, None]).astype(np.int64)  # (T, P)
        _, exp_id = np.unique(uni.exp_day, return_inverse=True)
        for name, mag in sets.items():
            z, pred = rollout(world, int(r), int(m), scfg.horizon, sd, mag * direction, gen)
            t_n = scfg.horizon + 1
            b_n = scfg.batch
            flat = z.reshape(-1, z.shape[-1])
            dec = np.empty((flat.shape[0], y_grid.size, k_grid.size))
            for s in range(0, flat.shape[0], scfg.batch):
                zb = flat[s : s + scfg.batch]
                dec[s : s + zb.shape[0]] = world.decode(
                    zb, np.broadcast_to(y_grid, (zb.shape[0], y_grid.size))
                )
            vols = dec.reshape(int(m), t_n, y_grid.size, k_grid.size)
            # vol surprise of step t: decoded z_t against the decoded LSTM prediction from step t - 1
            zf, pf = z[:, 1:].reshape(-1, z.shape[-1]), pred[:, :-1].reshape(-1, z.shape[-1])
            dlog = np.concatenate(
                [
                    vol_surprise(world, zf[s : s + b_n], pf[s : s + b_n], int(r))
                    for s in range(0, zf.shape[0], b_n)
                ]
            ).reshape(int(m), scfg.horizon)
            eps = rng.standard_normal(dlog.shape) if scfg.futures_noise else np.zeros_like(dlog)
            ret = rel.intercept + rel.slope * dlog + rel.resid_sd * eps
            fut = f0 * np.exp(np.concatenate([np.zeros((int(m), 1)), np.cumsum(ret, axis=1)], axis=1))
            src = pred if ecfg.mode == "mahalanobis-pred" else z
            energy = energy_of(src.reshape(-1, src.shape[-1]), mean, cov, ecfg.mode).reshape(int(m), t_n)
            if ecfg.alarm == "change":  # trailing median over the start day's history, then the path
                assert en.raw is not None
                hist = en.raw[world.ok & (world.ds.dates <= day)]
                energy[:, 1:] = trailing_change(hist, energy[:, 1:], ecfg.window)
            energy[:, 0] = en.energy[r]  # the start day: the historical hedger's own reading
            bid, ask = scenario_prices(uni, fut, vols, k_grid, y_grid, elapsed / 365.0, spreads)
            alarm = np.nan_to_num(energy, nan=-np.inf) > en.threshold
            sim = simulate_batch(fut, bid, ask, alarm, dte, uni.strike, exp_id, cfg)
            res = results[name]
            for k in keys:
                res[k].append(sim[k].sum(axis=1))
            res["trades"].append(sim["trades"])
            res["days_hedged"].append((sim["contracts"] > 0).sum(axis=1))
            res["start"].append(np.full(int(m), day))
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(scfg),
        "hedge": dataclasses.asdict(cfg),
        "energy": dataclasses.asdict(ecfg) | {"threshold": en.threshold},
        "calibration": {
            "before": str(test_start),
            "futures_relation": dataclasses.asdict(rel),
            "spread_overall": spreads.overall,
            "spread_quotes": spreads.n,
            "crash_days": [str(world.ds.dates[c]) for c in crash_rows],
        },
        "start_days": [str(world.ds.dates[r]) for r in rows],
        "start_days_without_puts": empty_days,
        "horizon": scfg.horizon,
    }
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for name, res in results.items():
        tot = {k: np.concatenate(v) for k, v in res.items()}
        summary[name] = summarise(tot)
        tables.append(
            pa.table(
                {"set": [name] * tot["unhedged"].size, "start": tot["start"].astype("datetime64[D]")}
                | {k: tot[k] for k in (*keys, "trades", "days_hedged")}
            )
        )
        sm = summary[name]
        say(
            f"scenarios {name} ({sm['scenarios']} x {scfg.horizon} days from {rows.size} test days): "
            f"hedged in {sm['hedged_fraction']:.0%} ({sm['mean_days_hedged']:.1f} days); PnL 5%/50% unhedged "
            f"${sm['unhedged']['q05']:,.0f}/${sm['unhedged']['q50']:,.0f}, hedged "
            f"${sm['hedged']['q05']:,.0f}/${sm['hedged']['q50']:,.0f}; hedge pays in "
            f"{sm['p_hedge_pays']:.0%} of hedged scenarios; mean spread ${sm['mean_spread_cost']:,.0f}"
        )
    write_parquet_atomic(pa.concat_tables(tables), folder / "scenarios.parquet")
    write_json(folder / "scenarios.json", summary)
    return summary
