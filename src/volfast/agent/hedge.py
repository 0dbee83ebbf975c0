"""The latent-energy hedger: a long ES futures portfolio that buys listed puts when the latent energy
crosses its training-period threshold, and the daily accounting that evaluates it out of sample.

Accounting (dollars, ES multiplier): futures PnL(t) = n_fut * mult * (F_t - F_{t-1}) on the same futures
contract (rolled to the next when its options are within ``roll_days``); the put is marked at its mid;
buying costs (ask - mid) and selling (mid - bid) per contract and point, so a round trip's PnL is exactly
(bid_exit - ask_entry) * mult * contracts; hedged PnL(t) = unhedged PnL(t) + put mark-to-mid PnL(t)
- costs(t). A put still held at its expiry (no bid to sell it at before) settles at its intrinsic value
max(K - F, 0) against the front futures, without spread.

Sizing (:func:`contracts_for`): ``budget`` alone buys budget x notional of premium; ``coverage`` buys puts
whose strike notional covers that fraction of the futures, with ``budget`` (per hedge) and
``annual_budget`` (trailing 365 days) as premium caps. Timing: bought on an alarm day, held at least
``hold_days``, sold once the alarm is off, after ``max_hold_days`` or ``exit_days`` before expiry; no new
hedge for ``cooldown_days`` after a sale.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from volfast.agent._config import AgentError, load_section, write_json
from volfast.agent.energy import EnergyConfig, latent_energy
from volfast.agent.world import World, load_world

__all__ = ["HedgeConfig", "contracts_for", "metrics", "run_hedge", "simulate", "walk_forward"]


@dataclasses.dataclass(frozen=True)
class HedgeConfig:
    futures: float = 10.0  # ES futures held long (the unhedged portfolio; 10 so a budget buys whole puts)
    multiplier: float = 50.0  # ES contract multiplier, dollars per index point
    target_days: float = 30.0  # put expiry: closest to this many calendar days ...
    min_days: float = 14.0  # ... within [min_days, max_days]
    max_days: float = 60.0
    otm: float = 0.05  # put strike closest to forward * (1 - otm)
    budget: float = 0.005  # premium per hedge (at the ask) as a fraction of the futures notional: the
    #                        size with coverage = 0, the cap on one hedge's premium with coverage > 0
    coverage: float = 0.0  # > 0: buy floor(coverage x futures x F / K) puts (the puts' strike notional
    #                        covers this fraction of the futures notional), capped by budget and annual_budget
    annual_budget: float = 0.0  # > 0: premium paid over the trailing 365 calendar days (in the evaluated
    #                             period) stays within this fraction of the futures notional
    hold_days: int = 10  # trading days held at least; then sold once the energy is back under threshold
    max_hold_days: int = 0  # > 0: sold after this many trading days even if the alarm is still on
    cooldown_days: int = 0  # > 0: no new hedge in the this many trading days after a sale
    exit_days: float = 5.0  # sold anyway when its expiry is this many calendar days away (or closer)
    roll_days: float = 5.0  # futures rolled when its last option expiry is this close
    put_symbol: str = ""  # trade this listed put (raw_symbol) instead of the rule's choice
    start: str = ""  # evaluation start YYYY-MM-DD (default and minimum: the encoder's test period start)
    end: str = ""  # evaluation end (default: last day)
    walk_forward: bool = True  # also compare the level and change alarms on folds of the training period

    def __post_init__(self) -> None:
        if not (self.min_days <= self.target_days <= self.max_days) or self.hold_days < 1:
            raise ValueError("HedgeConfig: need min_days <= target_days <= max_days and hold_days >= 1")
        if self.budget <= 0 or self.multiplier <= 0 or not 0 <= self.otm < 1:
            raise ValueError("HedgeConfig: need budget > 0, multiplier > 0, 0 <= otm < 1")
        if self.coverage < 0 or self.annual_budget < 0:
            raise ValueError("HedgeConfig: need coverage >= 0 and annual_budget >= 0 (0: off)")
        if self.max_hold_days < 0 or self.cooldown_days < 0:
            raise ValueError("HedgeConfig: need max_hold_days >= 0 and cooldown_days >= 0 (0: off)")
        if 0 < self.max_hold_days < self.hold_days:
            raise ValueError("HedgeConfig: max_hold_days must be >= hold_days (or 0: no limit)")


def contracts_for(
    cfg: HedgeConfig,
    *,
    forward: np.ndarray | float,
    strike: np.ndarray | float,
    ask: np.ndarray | float,
    spent: np.ndarray | float,
) -> np.ndarray:
    """Puts bought on an alarm (elementwise; whole contracts, may be 0).

    Parameters
    ----------
    forward : front futures price (index points); notional = futures x multiplier x forward.
    strike, ask : the chosen put's strike and ask (index points).
    spent : premium (dollars) already paid in the trailing 365 calendar days (for ``annual_budget``).

    Returns
    -------
    With ``coverage`` 0: floor(budget x futures x forward / ask) (premium = budget x notional). With
    ``coverage`` > 0: floor(coverage x futures x forward / strike), capped at floor(budget x futures x
    forward / ask) and, with ``annual_budget`` > 0, at floor((annual_budget x notional - spent) /
    (ask x multiplier)).
    """
    f, k, a = (np.asarray(x, dtype=np.float64) for x in (forward, strike, ask))
    eps = 1e-9  # 1 x 5000 / 5000 is one contract, not 0.999...
    cap = np.floor(cfg.budget * cfg.futures * f / a + eps)
    n = cap if cfg.coverage == 0 else np.minimum(np.floor(cfg.coverage * cfg.futures * f / k + eps), cap)
    if cfg.annual_budget > 0:
        room = cfg.annual_budget * cfg.futures * cfg.multiplier * f - np.asarray(spent, dtype=np.float64)
        n = np.minimum(n, np.floor(np.maximum(room, 0.0) / (a * cfg.multiplier) + eps))
    return np.asarray(np.maximum(n, 0.0))


@dataclasses.dataclass
class Market:
    """Per-day futures prices and put quotes, from a ``volfast build`` output."""

    dates: np.ndarray  # (D,) datetime64[D]
    futures: dict[str, dict[Any, float]]  # underlying -> {date: futures price}
    last_expiry: dict[str, np.datetime64]  # underlying -> its last option expiry (futures expiry)
    puts: Any  # pandas DataFrame of put quotes: date, raw_symbol, expiration, strike, bid, ask, mid, forward


def _days(col: Any) -> Any:
    """A date/timestamp column as ISO day strings turned numpy datetime64[D] objects (pandas keeps its own
    datetime resolution, so days are kept as an object column of np.datetime64 for exact dict lookups)."""
    arr = np.asarray(col.to_numpy(), dtype="datetime64[ns]").astype("datetime64[D]")
    return list(arr)


def read_market(build: str | os.PathLike[str]) -> Market:
    """Futures prices (median option-implied forward per underlying and day) and put quotes."""
    from volfast.surface import read_output

    root = Path(build)
    for t in ("quotes", "forwards"):
        if not (root / t).is_dir():
            raise AgentError(
                f"{root}: the {t} stage is missing ({root / t}); produce it with "
                f"`volfast build --data DBN_DIR --out {root}`"
            )
    fw = read_output(root, "forwards").to_pandas()
    fw = fw[np.isfinite(fw["forward"])]
    fw["date"] = _days(fw["date"])
    med = fw.groupby(["underlying", "date"])["forward"].median()
    futures: dict[str, dict[Any, float]] = {}
    for (u, d), f in med.items():
        futures.setdefault(str(u), {})[np.datetime64(d, "D")] = float(f)
    last = fw.groupby("underlying")["expiration"].max()
    last_expiry = {str(u): np.datetime64(v.tz_convert(None), "D") for u, v in last.items()}
    q = read_output(root, "quotes").to_pandas()
    q = q[~q["is_call"]].copy()
    q["date"] = _days(q["date"])
    q["exp_day"] = _days(q["expiration"].dt.tz_convert(None))
    q = q[["date", "raw_symbol", "underlying", "exp_day", "strike", "bid", "ask", "mid", "forward"]]
    dates = np.unique(np.asarray(q["date"].to_numpy(), dtype="datetime64[D]"))
    return Market(dates=dates, futures=futures, last_expiry=last_expiry, puts=q)


def _front(mkt: Market, day: np.datetime64, roll_days: float) -> str | None:
    """The front future (:func:`volfast.market.front_future`, the rule the backtest uses too)."""
    from volfast.market import front_future

    quoted = [u for u, px in mkt.futures.items() if day in px]
    return front_future(mkt.last_expiry, day=day, roll_days=roll_days, quoted=quoted)


def choose_put(day_puts: Any, day: np.datetime64, forward: float, cfg: HedgeConfig) -> Any | None:
    """The listed put the rule buys on ``day``: two-sided quote, expiry closest to ``target_days`` within
    [min_days, max_days], strike closest to forward * (1 - otm). None when there is none."""
    if cfg.put_symbol:
        hit = day_puts[day_puts["raw_symbol"] == cfg.put_symbol]
        hit = hit[(hit["bid"] > 0) & (hit["ask"] > 0)]
        return None if hit.empty else hit.iloc[0]
    days = (day_puts["exp_day"].to_numpy().astype("datetime64[D]") - day).astype(np.int64)
    ok = (days >= cfg.min_days) & (days <= cfg.max_days) & (day_puts["bid"] > 0).to_numpy()
    ok &= (day_puts["ask"] > 0).to_numpy()
    c = day_puts[ok]
    if c.empty:
        return None
    dd = days[ok]
    best_exp = c["exp_day"].to_numpy()[np.argmin(np.abs(dd - cfg.target_days))]
    c = c[c["exp_day"].to_numpy() == best_exp]
    i = int(np.argmin(np.abs(c["strike"].to_numpy() - forward * (1 - cfg.otm))))
    return c.iloc[i]


def simulate(
    mkt: Market, signal: dict[np.datetime64, bool], days: np.ndarray, cfg: HedgeConfig
) -> dict[str, Any]:
    """Daily accounting over ``days`` (sorted datetime64[D]); ``signal[day]``: the energy alarm on that day
    (decided on that day's surface, traded at that day's quotes). Returns per-day arrays (dollars) and the
    trade list."""
    n = days.size
    unhedged, put_pnl, costs, premium = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    held = np.zeros(n)
    by_day = {np.datetime64(d, "D"): g for d, g in mkt.puts.groupby("date")}
    trades: list[dict[str, Any]] = []
    skipped: list[str] = []
    fut: str | None = None
    pos: dict[str, Any] | None = None
    last_exit = -(10**9)  # step of the last sale (cool-down)
    for t, day in enumerate(days):
        day = np.datetime64(day, "D")
        if fut is not None and t > 0:
            px = mkt.futures[fut]
            prev = np.datetime64(days[t - 1], "D")
            if day in px and prev in px:
                unhedged[t] = cfg.futures * cfg.multiplier * (px[day] - px[prev])
        nf = _front(mkt, day, cfg.roll_days)
        fut = nf if nf is not None else fut
        dp = by_day.get(day)
        if pos is not None:
            q = None if dp is None else dp[dp["raw_symbol"] == pos["symbol"]]
            mark = pos["mark"]
            if q is not None and not q.empty and q.iloc[0]["bid"] > 0 and q.iloc[0]["ask"] > 0:
                mark = 0.5 * (q.iloc[0]["bid"] + q.iloc[0]["ask"])
                bid = float(q.iloc[0]["bid"])
            else:
                bid = float("nan")
                pos["stale_marks"] += 1
            f_now = None if fut is None else mkt.futures[fut].get(day)
            if (pos["exp_day"] - day).astype(int) <= 0 and f_now is not None:
                # expired unsold (no bid before expiry): settles at intrinsic against the front futures
                mark = bid = max(pos["strike"] - f_now, 0.0)
            put_pnl[t] = pos["contracts"] * cfg.multiplier * (mark - pos["mark"])
            pos["mark"] = mark
            pos["days"] += 1
            dte = (pos["exp_day"] - day).astype(int)
            want_out = (pos["days"] >= cfg.hold_days and not signal.get(day, False)) or dte <= cfg.exit_days
            want_out |= 0 < cfg.max_hold_days <= pos["days"]
            if want_out and np.isfinite(bid):
                costs[t] += pos["contracts"] * cfg.multiplier * (mark - bid)
                trades[-1] |= {
                    "exit": str(day),
                    "bid": bid,
                    "pnl": pos["contracts"] * cfg.multiplier * (bid - pos["ask"]),
                }
                pos = None
                last_exit = t
        cooling = cfg.cooldown_days > 0 and t - last_exit <= cfg.cooldown_days
        if cooling and signal.get(day, False) and pos is None:
            skipped.append(f"{day}: alarm in the cool-down after the sale on {days[last_exit]}")
        elif pos is None and signal.get(day, False) and fut is not None and dp is not None and t < n - 1:
            fwd = mkt.futures[fut][day]
            put = choose_put(dp, day, fwd, cfg)
            if put is None:
                skipped.append(
                    f"{day}: no listed put {cfg.put_symbol or 'matching the rule'} with a two-sided quote"
                )
            else:
                ask, bid = float(put["ask"]), float(put["bid"])
                recent = days[: t + 1] > day - np.timedelta64(365, "D")
                spent = float(premium[: t + 1][recent].sum())
                k = float(put["strike"])
                n_c = float(contracts_for(cfg, forward=fwd, strike=k, ask=ask, spent=spent))
                if n_c < 1:
                    why = "annual_budget" if cfg.annual_budget > 0 and spent > 0 else "budget"
                    skipped.append(f"{day}: {why} buys no {put['raw_symbol']} at ask {ask}")
                else:
                    mid = 0.5 * (bid + ask)
                    costs[t] += n_c * cfg.multiplier * (ask - mid)
                    premium[t] += n_c * cfg.multiplier * ask
                    pos = {
                        "symbol": str(put["raw_symbol"]),
                        "strike": k,
                        "contracts": n_c,
                        "mark": mid,
                        "ask": ask,
                        "exp_day": np.datetime64(put["exp_day"], "D"),
                        "days": 0,
                        "stale_marks": 0,
                    }
                    trades.append(
                        {
                            "entry": str(day),
                            "symbol": pos["symbol"],
                            "strike": float(put["strike"]),
                            "expiry": str(pos["exp_day"]),
                            "contracts": n_c,
                            "ask": ask,
                            "mid": mid,
                        }
                    )
        held[t] = 0.0 if pos is None else pos["contracts"]
    if pos is not None:  # still open at the end: marked at its last mid, no exit spread charged
        trades[-1] |= {"exit": None, "open_at_end": True}
    hedged = unhedged + put_pnl - costs
    return {
        "dates": days,
        "unhedged": unhedged,
        "hedged": hedged,
        "put_pnl": put_pnl,
        "costs": costs,
        "premium": premium,
        "contracts": held,
        "trades": trades,
        "skipped": skipped,
    }


def metrics(pnl: np.ndarray, capital: float) -> dict[str, float]:
    """Total PnL, annualised Sharpe (252 days, daily PnL / capital), max drawdown (dollars and fraction of
    capital, from the running peak of capital + cumulative PnL)."""
    r = np.asarray(pnl) / capital
    sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    eq = capital + np.cumsum(pnl)
    peak = np.maximum.accumulate(np.concatenate([[capital], eq]))[1:]
    dd = float(np.max(peak - eq)) if eq.size else 0.0
    return {
        "total_pnl": float(np.sum(pnl)),
        "sharpe": float(np.mean(r) / sd * np.sqrt(252)) if sd > 0 else float("nan"),
        "max_drawdown": dd,
        "max_drawdown_frac": dd / capital,
    }


def _capital(mkt: Market, days: np.ndarray, cfg: HedgeConfig) -> float:
    """The futures notional on the first day (dollars): the capital Sharpe and drawdown are relative to."""
    d0 = np.datetime64(days[0], "D")
    f0 = next(iter(v for v in (mkt.futures[u].get(d0) for u in mkt.futures) if v))
    return cfg.futures * cfg.multiplier * float(f0)


def walk_forward(
    world: World, mkt: Market, cfg: HedgeConfig, candidates: dict[str, EnergyConfig], folds: int = 2
) -> dict[str, Any]:
    """Compare alarms on the training period only (never the test period).

    The complete training days are split in half; the second half is cut into ``folds`` consecutive
    blocks. Each block is traded with each candidate alarm whose energy reference and threshold use only
    the days before the block (expanding window). Score per candidate, summed over blocks (dollars):
    (hedged total PnL - hedged max drawdown) - (unhedged total PnL - unhedged max drawdown), i.e. drawdown
    saved minus carry paid; 0 is the value of not hedging. The encoder and LSTM were fitted on the whole
    training period, so this is a walk-forward of the alarm rule, not of the world model.
    """
    tr_days = world.ds.dates[world.train_mask()]
    if tr_days.size < 4 * folds:
        return {"skipped": f"{tr_days.size} complete training days; need {4 * folds} for {folds} folds"}
    half = tr_days.size // 2
    cuts = [tr_days[half + i * (tr_days.size - half) // folds] for i in range(folds)]
    ends = [*cuts[1:], tr_days[-1] + np.timedelta64(1, "D")]
    one = np.timedelta64(1, "D")
    out: dict[str, Any] = {"folds": [[str(a), str(b - one)] for a, b in zip(cuts, ends, strict=True)]}
    scores: dict[str, Any] = {}
    for name, ecfg in candidates.items():
        rows: list[dict[str, Any]] = []
        for a, b in zip(cuts, ends, strict=True):
            days = mkt.dates[(mkt.dates >= a) & (mkt.dates < b)]
            if days.size < 2 or not any(np.datetime64(days[0], "D") in px for px in mkt.futures.values()):
                rows.append({"error": f"fold {a}..{b}: {days.size} days with quotes and a futures price"})
                continue
            try:
                en = latent_energy(world, ecfg, before=a)
            except AgentError as exc:
                rows.append({"error": str(exc)})
                continue
            sig = {np.datetime64(d, "D"): bool(x) for d, x in zip(en.dates, en.alarm(), strict=True)}
            sim = simulate(mkt, sig, days, cfg)
            cap = _capital(mkt, days, cfg)
            u, h = metrics(sim["unhedged"], cap), metrics(sim["hedged"], cap)
            rows.append(
                {
                    "threshold": en.threshold,
                    "days_hedged": int((sim["contracts"] > 0).sum()),
                    "hedges": len(sim["trades"]),
                    "premium": float(sim["premium"].sum()),
                    "unhedged_max_dd": u["max_drawdown"],
                    "hedged_max_dd": h["max_drawdown"],
                    "carry": u["total_pnl"] - h["total_pnl"],
                    "score": (h["total_pnl"] - h["max_drawdown"]) - (u["total_pnl"] - u["max_drawdown"]),
                }
            )
        ok = all("score" in r for r in rows)
        scores[name] = {"folds": rows, "score": float(sum(r["score"] for r in rows)) if ok else float("nan")}
    out["candidates"] = scores
    finite = {k: v["score"] for k, v in scores.items() if np.isfinite(v["score"])}
    out["best"] = max(finite, key=lambda k: finite[k]) if finite else None
    return out


def run_hedge(
    run: str | os.PathLike[str],
    build: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    log: Any = None,
) -> dict[str, Any]:
    """``volfast hedge``: energy from the run's encoder + LSTM (threshold on the training period), the put
    rule evaluated on the test period only; writes ``OUT/hedge.parquet`` (daily PnL), ``OUT/hedge.json``."""
    import pyarrow as pa

    from volfast.io.output import write_parquet_atomic

    say = log or (lambda s: None)
    e_over = [o for o in overrides if o.strip().startswith("energy.")]
    h_over = [o for o in overrides if not o.strip().startswith("energy.")]
    cfg = load_section(HedgeConfig, "hedge", config_path, h_over)
    ecfg = load_section(EnergyConfig, "energy", config_path, e_over)
    mkt = read_market(build)  # first: a missing build stage is named before any model work
    world = load_world(run, data=build, device=device)
    en = latent_energy(world, ecfg)
    test_start = np.datetime64(world.split.test_start, "D")
    lo = np.datetime64(cfg.start, "D") if cfg.start else test_start
    if lo < test_start:
        raise AgentError(
            f"hedge.start {cfg.start} is before the test period ({world.split.test_start}): "
            "results are out of sample only"
        )
    hi = np.datetime64(cfg.end, "D") if cfg.end else mkt.dates.max()
    days = mkt.dates[(mkt.dates >= lo) & (mkt.dates <= hi)]
    if days.size < 2:
        raise AgentError(
            f"backtest period {lo}..{hi}: {days.size} days with quotes in {build}; need at least 2"
        )
    if cfg.put_symbol and not (mkt.puts["raw_symbol"] == cfg.put_symbol).any():
        raise AgentError(f"hedge.put_symbol {cfg.put_symbol!r}: no such put in {build}/quotes")
    alarm = en.alarm()
    signal = {np.datetime64(d, "D"): bool(a) for d, a in zip(en.dates, alarm, strict=True)}
    valid = {np.datetime64(d, "D") for d in world.ds.dates[world.ok]}
    if not any(np.datetime64(d, "D") in valid for d in days):
        raise AgentError(f"backtest period {lo}..{hi}: no complete (valid surface) day to read the energy on")
    sim = simulate(mkt, signal, days, cfg)
    wf: dict[str, Any] = {}
    if cfg.walk_forward:
        cands = {a: dataclasses.replace(ecfg, alarm=a) for a in ("level", "change")}
        wf = walk_forward(world, mkt, dataclasses.replace(cfg, start="", end=""), cands)
    capital = _capital(mkt, days, cfg)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    cols = {k: sim[k] for k in ("unhedged", "hedged", "put_pnl", "costs", "premium", "contracts")}
    e_by = {np.datetime64(d, "D"): e for d, e in zip(en.dates, en.energy, strict=True)}
    cols["energy"] = np.array([e_by.get(np.datetime64(d, "D"), np.nan) for d in days])
    write_parquet_atomic(pa.table({"date": days.astype("datetime64[D]")} | cols), folder / "hedge.parquet")
    summary = {
        "config": dataclasses.asdict(cfg),
        "energy": dataclasses.asdict(ecfg) | {"threshold": en.threshold},
        "period": [str(days[0]), str(days[-1])],
        "days": int(days.size),
        "capital": capital,
        "unhedged": metrics(sim["unhedged"], capital),
        "hedged": metrics(sim["hedged"], capital),
        "put_pnl": float(sim["put_pnl"].sum()),
        "spread_costs": float(sim["costs"].sum()),
        "premium_paid": float(sim["premium"].sum()),
        "alarm_days": int(sum(signal.get(np.datetime64(d, "D"), False) for d in days)),
        "days_hedged": int((sim["contracts"] > 0).sum()),
        "training_walk_forward": wf,
        "trades": sim["trades"],
        "skipped": sim["skipped"],
    }
    write_json(folder / "hedge.json", summary)
    u, h = summary["unhedged"], summary["hedged"]
    say(
        f"hedge {days[0]}..{days[-1]} ({days.size} days, out of sample): unhedged Sharpe {u['sharpe']:.2f} "
        f"max DD ${u['max_drawdown']:,.0f}; hedged Sharpe {h['sharpe']:.2f} "
        f"max DD ${h['max_drawdown']:,.0f}; {len(sim['trades'])} hedges on {summary['days_hedged']} days, "
        f"premium ${summary['premium_paid']:,.0f}, spread ${summary['spread_costs']:,.0f}"
    )
    return summary
