"""Daily backtest loop: marks at mid, exits, entries in the listed option nearest the signal's node,
then the delta hedge with the front ES future (Black-76 forward delta), all booked in a :class:`Ledger`.

Order of each day's events at the cut: (1) mark every position at today's mid (a position without a mid
today keeps its previous mark); (2) close trades whose holding period is over, or whose option expires
before the next backtest day, at the bid (long) / ask (short), or at intrinsic value against its future's
mid on or after expiry when it has no two-sided quote; (3) open new trades at the ask (buy) / bid (sell);
(4) roll futures out of a contract within ``roll_days`` of expiry and trade the front future to bring the
portfolio delta to zero.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

import numpy as np
import pandas as pd

from volfast.backtest.config import BacktestConfig, BacktestError
from volfast.backtest.ledger import Ledger
from volfast.backtest.market import DayMarket, Market

__all__ = ["EngineResult", "Trade", "nearest_option", "run_engine"]


@dataclasses.dataclass
class Trade:
    trade_id: int
    instrument_id: int
    raw_symbol: str
    qty: float  # signed option contracts
    multiplier: float
    entry_date: _dt.date
    entry_price: float
    exit_index: int  # calendar index on or after which the trade closes
    expiration: pd.Timestamp
    in_sample: bool
    z: float
    node: tuple[int, int]
    exit_date: _dt.date | None = None
    exit_price: float = float("nan")
    strike: float = float("nan")
    is_call: bool = True
    underlying: str = ""
    hedge_contract: int | None = None  # the future its hedge sits in
    hedge: float = 0.0  # futures contracts this trade's delta calls for (fractional)
    hedge_pnl: float = 0.0  # its hedge's mid-to-mid PnL, currency
    commission: float = 0.0
    delta: float = float("nan")
    exit_reason: str = ""

    @property
    def option_pnl(self) -> float:
        """Fill to fill, currency (NaN while open)."""
        return self.qty * (self.exit_price - self.entry_price) * self.multiplier

    @property
    def pnl(self) -> float:
        return self.option_pnl + self.hedge_pnl - self.commission


@dataclasses.dataclass
class EngineResult:
    daily: pd.DataFrame  # one row per day: equity, cash, marks, attribution, margin, positions
    trades: pd.DataFrame  # one row per trade
    skipped: pd.DataFrame  # signals not traded and why


def _two_sided(o: Any) -> Any:
    return np.isfinite(o["bid"]) & np.isfinite(o["ask"]) & (o["bid"] > 0) & (o["ask"] >= o["bid"])


def nearest_option(day: DayMarket, *, expiry_years: float, log_moneyness: float) -> int | None:
    """instrument_id of the listed option nearest a grid node: the expiry nearest ``expiry_years``, then,
    among its two-sided quotes with a mid vol on the out-of-the-money side (puts below the forward, calls
    at or above; either side when that side has none), the strike nearest ``ln(K/F) = log_moneyness``."""
    o = day.options
    o = o[_two_sided(o) & np.isfinite(o["mid_iv"]) & np.isfinite(o["forward"])]
    if o.empty:
        return None
    gap = (o["expiry_years"] - expiry_years).abs()
    o = o[gap <= gap.min() + 1e-9]
    otm = o[o["is_call"] == (log_moneyness >= 0)]
    o = otm if not otm.empty else o
    return int((o["log_moneyness"] - log_moneyness).abs().idxmin())


def _delta(row: Any) -> float:
    from volfast import black76_delta

    vol = row["mid_iv"] if np.isfinite(row["mid_iv"]) else row["fit_iv"]
    if not (np.isfinite(vol) and np.isfinite(row["forward"]) and row["expiry_years"] > 0):
        return float("nan")
    return float(
        black76_delta(
            forward=float(row["forward"]),
            strike=float(row["strike"]),
            expiry_years=float(row["expiry_years"]),
            vol=float(vol),
            is_call=bool(row["is_call"]),
            discount_factor=float(row["discount_factor"]),
        )
    )


def run_engine(
    market: Market,
    decisions: pd.DataFrame,
    cfg: BacktestConfig,
    *,
    in_sample: dict[_dt.date, bool] | None = None,
) -> EngineResult:
    """Trade ``decisions`` (rows: ``date``, ``side`` +1/-1, ``hold_days``; and either ``instrument_id`` or
    the node's ``expiry_years`` and ``log_moneyness``; optional ``z``, ``i``, ``j``) over the days of
    ``market``. Raises :class:`BacktestError` for a decision on a day the market lacks, or an explicit
    instrument_id that is not among that day's options."""
    dates = market.dates
    if not dates:
        raise BacktestError("the backtest period has no days with market data")
    index = {d: t for t, d in enumerate(dates)}
    by_day: dict[_dt.date, list[dict[str, Any]]] = {}
    for rec in decisions.to_dict("records"):
        d = rec["date"]
        if d not in index:
            raise BacktestError(f"signal on {d}: no market data (quotes/snapshot) for that day in the period")
        by_day.setdefault(d, []).append(rec)
    in_sample = in_sample or {}
    led = Ledger(cfg.capital)
    open_trades: list[Trade] = []
    done: list[Trade] = []
    skipped: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    fut_mid_prev: dict[int, float] = {}
    next_id = 0
    for t, d in enumerate(dates):
        day = market[d]
        led.start_day()
        opts, futs = day.options, day.futures
        # (1) marks; per-trade hedge PnL on the contract each trade's hedge sat in
        for key, p in list(led.positions.items()):
            src = opts if p.kind == "option" else futs
            if key in src.index and np.isfinite(src.at[key, "mid"]):
                led.mark(key, float(src.at[key, "mid"]))
        fut_mid = {int(k): float(v) for k, v in futs["mid"].items() if np.isfinite(v)}
        for tr in open_trades:
            c = tr.hedge_contract
            if c is not None and c in fut_mid and c in fut_mid_prev:
                tr.hedge_pnl += tr.hedge * (fut_mid[c] - fut_mid_prev[c]) * float(futs.at[c, "multiplier"])
        # (2) exits
        nxt = dates[t + 1] if t + 1 < len(dates) else None
        still: list[Trade] = []
        for tr in open_trades:
            exp_day = tr.expiration.date()
            expiring = nxt is not None and exp_day < nxt
            if t < tr.exit_index and not expiring:
                still.append(tr)
                continue
            key = tr.instrument_id
            if key in opts.index and _two_sided(opts.loc[[key]]).iloc[0]:
                q = opts.loc[key]
                price = float(q["bid"] if tr.qty > 0 else q["ask"])
                _close(led, tr, price, float(q["mid"]), cfg, d, "expiring" if expiring else "held")
                done.append(tr)
            elif exp_day <= d:
                price = _intrinsic(tr, day, led)
                _close(led, tr, price, price, cfg, d, "expired")
                done.append(tr)
            else:
                still.append(tr)  # no two-sided quote today: try again tomorrow
        open_trades = still
        # (3) entries
        for rec in by_day.get(d, []):
            if len(open_trades) >= cfg.max_open:
                skipped.append({"date": d, "reason": f"max_open={cfg.max_open} trades already open"})
                continue
            given = rec.get("instrument_id")
            iid: int | None
            if given is not None and not (isinstance(given, float) and np.isnan(given)):
                iid = int(given)
                if iid not in opts.index:
                    raise BacktestError(
                        f"signal on {d}: instrument_id {iid} is not among that day's options "
                        f"({len(opts)} listed); pick one from the run's quotes table"
                    )
                if not _two_sided(opts.loc[[iid]]).iloc[0]:
                    skipped.append({"date": d, "reason": f"instrument {iid} has no two-sided quote"})
                    continue
            else:
                iid = nearest_option(
                    day, expiry_years=float(rec["expiry_years"]), log_moneyness=float(rec["log_moneyness"])
                )
                if iid is None:
                    skipped.append({"date": d, "reason": "no two-sided option with a vol near the node"})
                    continue
            q = opts.loc[iid]
            if not np.isfinite(q["multiplier"]):
                raise BacktestError(
                    f"{d}: option {iid} ({q['raw_symbol']}) has no multiplier in the snapshot"
                )
            qty = float(rec["side"]) * cfg.contracts
            price = float(q["ask"] if qty > 0 else q["bid"])
            tr = Trade(
                trade_id=next_id,
                instrument_id=iid,
                raw_symbol=str(q["raw_symbol"]),
                qty=qty,
                multiplier=float(q["multiplier"]),
                entry_date=d,
                entry_price=price,
                exit_index=t + int(rec["hold_days"]),
                expiration=pd.Timestamp(q["expiration"]),
                in_sample=bool(in_sample.get(d, False)),
                z=float(rec.get("z", np.nan)),
                node=(int(rec.get("i", -1)), int(rec.get("j", -1))),
                strike=float(q["strike"]),
                is_call=bool(q["is_call"]),
                underlying=str(q["underlying"]),
            )
            next_id += 1
            led.fill(iid, qty, price=price, mid=float(q["mid"]), multiplier=tr.multiplier, kind="option",
                     commission=cfg.option_commission)  # fmt: skip
            tr.commission += abs(qty) * cfg.option_commission
            open_trades.append(tr)
        # (4) hedge
        front = day.front_future(cfg.roll_days)
        fut_qty_before = {k: p.qty for k, p in led.positions.items() if p.kind == "future"}
        unhedged = front is None
        if front is not None:
            fm = float(futs.at[front, "multiplier"])
            target = 0.0
            for tr in open_trades:
                if tr.instrument_id in opts.index:
                    dl = _delta(opts.loc[tr.instrument_id])
                    if np.isfinite(dl):
                        tr.delta = dl
                if np.isfinite(tr.delta):
                    tr.hedge = -tr.qty * tr.multiplier * tr.delta / fm
                tr.hedge_contract = front
                target += tr.hedge
            if cfg.hedge_integer:
                target = float(np.round(target))
            for k, q0 in fut_qty_before.items():  # roll out of other contracts
                if k != front and k in futs.index and _two_sided(futs.loc[[k]]).iloc[0]:
                    f = futs.loc[k]
                    led.fill(k, -q0, price=float(f["bid"] if q0 > 0 else f["ask"]), mid=float(f["mid"]),
                             multiplier=float(f["multiplier"]), kind="future",
                             commission=cfg.future_commission)  # fmt: skip
            dq = target - led.qty(front)
            if abs(dq) > 1e-9:
                f = futs.loc[front]
                led.fill(front, dq, price=float(f["ask"] if dq > 0 else f["bid"]), mid=float(f["mid"]),
                         multiplier=fm, kind="future", commission=cfg.future_commission)  # fmt: skip
        fut_mid_prev = fut_mid
        rows.append(_day_row(d, led, open_trades, day, front, cfg, in_sample.get(d, False), unhedged))
    for tr in open_trades:
        tr.exit_reason = "open at end"
    trades = pd.DataFrame([_trade_row(tr) for tr in done + open_trades])
    return EngineResult(pd.DataFrame(rows), trades, pd.DataFrame(skipped, columns=["date", "reason"]))


def _close(
    led: Ledger, tr: Trade, price: float, mid: float, cfg: BacktestConfig, d: _dt.date, why: str
) -> None:
    led.fill(tr.instrument_id, -tr.qty, price=price, mid=mid, multiplier=tr.multiplier, kind="option",
             commission=cfg.option_commission)  # fmt: skip
    tr.commission += abs(tr.qty) * cfg.option_commission
    tr.exit_date, tr.exit_price, tr.exit_reason = d, price, why
    tr.hedge = 0.0


def _intrinsic(tr: Trade, day: DayMarket, led: Ledger) -> float:
    """Expiry value of an option with no quote: intrinsic against its underlying future's mid today (its
    last mark when that future has no mid either)."""
    f = day.futures
    und = f[(f["raw_symbol"] == tr.underlying) & np.isfinite(f["mid"])]
    if und.empty:
        p = led.positions.get(tr.instrument_id)
        return float(p.mark if p is not None else tr.entry_price)
    fwd = float(und["mid"].iloc[0])
    return max(fwd - tr.strike, 0.0) if tr.is_call else max(tr.strike - fwd, 0.0)


def _day_row(
    d: _dt.date,
    led: Ledger,
    open_trades: list[Trade],
    day: DayMarket,
    front: int | None,
    cfg: BacktestConfig,
    is_in: bool,
    unhedged: bool,
) -> dict[str, Any]:
    f_price = float(day.futures.at[front, "mid"]) if front is not None else float("nan")
    margin = 0.0
    opt_delta = 0.0
    fut_delta = 0.0
    for p in led.positions.values():
        if p.kind == "future":
            margin += cfg.margin_rate * abs(p.qty) * p.multiplier * p.mark
            fut_delta += p.qty * p.multiplier
        elif p.qty < 0:
            margin += cfg.margin_rate * abs(p.qty) * p.multiplier * (f_price if np.isfinite(f_price) else 0.0)
    for tr in open_trades:
        if np.isfinite(tr.delta):
            opt_delta += tr.qty * tr.multiplier * tr.delta
    return {
        "date": d,
        "in_sample": is_in,
        "equity": led.equity(),
        "cash": led.cash,
        "marks": led.marks_value(),
        "pnl": led.day_pnl(),
        **{f"pnl_{k}": v for k, v in led.day.items()},
        "margin": margin,
        "open_trades": len(open_trades),
        "futures": sum(p.qty for p in led.positions.values() if p.kind == "future"),
        "option_delta": opt_delta,  # currency per index point
        "net_delta": opt_delta + fut_delta,
        "traded_notional": led.traded_notional,
        "unhedged": unhedged,
    }


def _trade_row(tr: Trade) -> dict[str, Any]:
    return {
        "trade_id": tr.trade_id,
        "instrument_id": tr.instrument_id,
        "raw_symbol": tr.raw_symbol,
        "qty": tr.qty,
        "node_i": tr.node[0],
        "node_j": tr.node[1],
        "z": tr.z,
        "in_sample": tr.in_sample,
        "entry_date": tr.entry_date,
        "entry_price": tr.entry_price,
        "exit_date": tr.exit_date,
        "exit_price": tr.exit_price,
        "exit_reason": tr.exit_reason,
        "option_pnl": tr.option_pnl,
        "hedge_pnl": tr.hedge_pnl,
        "commission": tr.commission,
        "pnl": tr.pnl,
    }
