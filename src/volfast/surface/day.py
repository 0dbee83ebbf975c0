"""One day's surface: snapshot table -> chains -> forwards -> vols -> SVI -> validity -> grids -> tables.

Every stage keeps what it could not use, with a status and a reason, and the day goes on with the rest:
expiries without a forward (one-sided chains, crossed markets, too few pairs, parity regressions that do not
converge), quotes without a vol (no quote, one-sided, crossed, zero or negative prices, stale, outside the
no-arbitrage bounds) and slices without an acceptable SVI fit all end up in the output tables and in the
day's counts. A day that fails :class:`~volfast.surface.validity.ValidityConfig` keeps its quotes, forwards
and fits but gets no grids.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from typing import Any

import numpy as np

from volfast.errors import UsageError
from volfast.surface.dataset import DayGrids, day_grids
from volfast.surface.grids import GridConfig
from volfast.surface.interpolate import EXTRAPOLATIONS, FittedSurface, svi_total_variance
from volfast.surface.validity import (
    DayValidity,
    ValidityConfig,
    atm_std_dev,
    check_expiries,
    expiry_coverage,
)
from volfast.surface.vols import SIDES, QuoteStatus, quote_vols

__all__ = ["STAGES", "SurfaceConfig", "SurfaceDay", "surface_day"]

#: Timed stages of :func:`surface_day`, in order (keys of :attr:`SurfaceDay.timings`).
STAGES = ("chains", "forwards", "vols", "svi", "validity", "grids", "tables")
GRID_EXPIRIES = ("fitted", "valid")
#: ``SurfaceConfig.arbitrage``: enforce (arbitrage-free fits), check (independent fits, violations flagged),
#: off (independent fits, nothing flagged).
ARBITRAGE_MODES = ("enforce", "check", "off")
#: ``SurfaceConfig.exercise``: auto is american for OPRA datasets (US equity/ETF options), european otherwise.
EXERCISE_STYLES = ("auto", "european", "american")


@dataclasses.dataclass(frozen=True)
class SurfaceConfig:
    """How a day's surface is built (all defaults from the issue / original research)."""

    side: str = "otm"  # quotes in the smile: otm | call | put | both
    drop_stale: bool = True  # quotes the snapshot flags stale are left out (status STALE)
    forward_method: str = "huber"  # volfast.implied_forward method: huber | bayes | naive
    # enforce: volfast.fit_svi(arbitrage_free=True); check: arbitrage_free=False, butterfly/calendar flags
    # reported and counted; off: arbitrage_free=False, the flags left empty
    arbitrage: str = "enforce"
    # continuously compounded ACT/365 rate; given, every expiry's D = exp(-r T) exactly (forward by parity)
    rate: float | None = None
    # ((tenor_years, rate), ...): a zero curve, linear in T between tenors, flat beyond (instead of rate)
    rate_curve: tuple[tuple[float, float], ...] | None = None
    rate_band: tuple[float, float] = (-0.05, 0.20)  # an expiry's own implied rate outside is not trusted
    # american: forward/discount by parity on near-the-money pairs only (american_window ATM standard
    # deviations) and vols from out-of-the-money quotes only; auto: american for OPRA datasets
    exercise: str = "auto"
    american_window: float = 1.0
    # american: remove the early-exercise premiums (lattice on the forward curve's implied dividends) from
    # bid and ask before parity and vols, iterating until no forward moves by 0.01 bp
    # (volfast.forward.american); false keeps the near-the-money parity on the American quotes themselves
    deamericanise: bool = True
    # deprecated alias of ``arbitrage`` (True: enforce, False: check); not stored, so not hashed twice
    arbitrage_free: dataclasses.InitVar[bool | None] = None
    robust: bool = False  # volfast.fit_svi: Huber IRLS against stray quotes
    max_rmse: float | None = None  # vol points; slices fitting worse get SVI status NO_FIT
    extrapolation: str = "flat_forward"  # beyond the last expiry: flat_forward | constant_vol
    grid_expiries: str = "fitted"  # slices the surface is built from: every fitted one, or only valid ones
    validity: ValidityConfig = dataclasses.field(default_factory=ValidityConfig)
    grids: GridConfig = dataclasses.field(default_factory=GridConfig)

    def __post_init__(self, arbitrage_free: bool | None) -> None:
        if arbitrage_free is not None:  # the old boolean: folded into ``arbitrage`` (one setting)
            object.__setattr__(self, "arbitrage", "enforce" if arbitrage_free else "check")
        if self.arbitrage not in ARBITRAGE_MODES:
            raise UsageError(
                f"surfaces.arbitrage must be one of {', '.join(ARBITRAGE_MODES)}, got {self.arbitrage!r}"
            )
        if self.exercise not in EXERCISE_STYLES:
            raise UsageError(
                f"surfaces.exercise must be one of {', '.join(EXERCISE_STYLES)}, got {self.exercise!r}"
            )
        if not isinstance(self.deamericanise, bool):
            raise UsageError(f"surfaces.deamericanise must be true or false, got {self.deamericanise!r}")
        if not (self.american_window > 0):
            raise UsageError(
                f"surfaces.american_window must be > 0 ATM standard deviations, got {self.american_window}"
            )
        band = tuple(float(x) for x in self.rate_band)
        if len(band) != 2 or not band[0] < band[1]:
            raise UsageError(
                f"surfaces.rate_band must be (low, high) with low < high, got {self.rate_band!r}"
            )
        object.__setattr__(self, "rate_band", band)
        if self.rate is not None:
            if self.rate_curve is not None:
                raise UsageError("surfaces: give rate or rate_curve, not both")
            r = float(self.rate)
            if not np.isfinite(r) or abs(r) >= 1.0:
                raise UsageError(f"surfaces.rate must be a finite fraction (0.04 = 4%), got {self.rate!r}")
            object.__setattr__(self, "rate", r)
        if self.rate_curve is not None:
            object.__setattr__(self, "rate_curve", _check_curve(self.rate_curve))
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        if self.forward_method not in ("huber", "bayes", "naive"):
            raise ValueError(f"forward_method must be huber, bayes or naive, got {self.forward_method!r}")
        if self.extrapolation not in EXTRAPOLATIONS:
            raise ValueError(f"extrapolation must be one of {EXTRAPOLATIONS}, got {self.extrapolation!r}")
        if self.grid_expiries not in GRID_EXPIRIES:
            raise ValueError(f"grid_expiries must be one of {GRID_EXPIRIES}, got {self.grid_expiries!r}")
        if self.max_rmse is not None and not self.max_rmse > 0:
            raise ValueError(f"max_rmse must be > 0 vol points, got {self.max_rmse}")

    def rates(self, expiry_years: np.ndarray) -> np.ndarray | None:
        """The given zero rate at each year fraction (``rate`` or ``rate_curve``), None when none is given."""
        t = np.asarray(expiry_years, dtype=float)
        if self.rate is not None:
            return np.full(t.shape, self.rate)
        if self.rate_curve is not None:
            c = np.asarray(self.rate_curve, dtype=float)
            return np.interp(t, c[:, 0], c[:, 1])
        return None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["rate_band"] = list(self.rate_band)
        d["rate_curve"] = None if self.rate_curve is None else [list(p) for p in self.rate_curve]
        d["validity"] = self.validity.to_dict()
        d["grids"] = self.grids.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SurfaceConfig:
        """From a mapping (e.g. the ``[surfaces]`` table of a build TOML); nested ``validity`` and ``grids``
        tables; unknown keys raise."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)} | {"arbitrage_free"}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"SurfaceConfig: unknown keys {sorted(unknown)}")
        if "validity" in d and not isinstance(d["validity"], ValidityConfig):
            v = dict(d["validity"])
            vnames = {f.name for f in dataclasses.fields(ValidityConfig)}
            if set(v) - vnames:
                raise ValueError(f"SurfaceConfig.validity: unknown keys {sorted(set(v) - vnames)}")
            d["validity"] = ValidityConfig(**v)
        if "grids" in d and not isinstance(d["grids"], GridConfig):
            d["grids"] = GridConfig.from_dict(dict(d["grids"]))
        for key in ("rate_band",):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)


def _check_curve(curve: Any) -> tuple[tuple[float, float], ...]:
    """``((tenor_years, rate), ...)`` sorted by tenor, from any sequence of pairs; raises UsageError."""
    try:
        pts = [(float(a), float(b)) for a, b in curve]
    except (TypeError, ValueError):
        raise UsageError(
            f"surfaces.rate_curve must be a list of (tenor_years, rate) pairs, got {curve!r}"
        ) from None
    if not pts:
        raise UsageError("surfaces.rate_curve is empty")
    for t, r in pts:
        if not (np.isfinite(t) and t >= 0 and np.isfinite(r) and abs(r) < 1.0):
            raise UsageError(
                f"surfaces.rate_curve: bad point (tenor_years {t}, rate {r}): need tenor >= 0 and |rate| < 1"
            )
    pts.sort()
    if len({t for t, _ in pts}) != len(pts):
        raise UsageError("surfaces.rate_curve: a tenor appears twice")
    return tuple(pts)


def read_rate_curve(path: str | Any) -> tuple[tuple[float, float], ...]:
    """A zero curve from a CSV file with columns ``tenor_years`` and ``rate`` (continuously compounded,
    ACT/365 fractions); raises :class:`~volfast.errors.UsageError` naming the file and row."""
    import csv
    from pathlib import Path

    p = Path(path)
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the rate curve ({exc.strerror or exc})") from None
    if not rows or not {"tenor_years", "rate"} <= {c.strip() for c in rows[0]}:
        raise UsageError(f"{p}: a rate curve needs the columns tenor_years and rate")
    pts = []
    for i, row in enumerate(rows, start=1):
        row = {k.strip(): v for k, v in row.items() if k is not None}
        try:
            pts.append((float(row["tenor_years"]), float(row["rate"])))
        except (TypeError, ValueError):
            raise UsageError(
                f"{p}: row {i}: tenor_years {row.get('tenor_years')!r} / rate {row.get('rate')!r} "
                "is not a number"
            ) from None
    try:
        return _check_curve(pts)
    except UsageError as exc:
        raise UsageError(f"{p}: {exc}") from None


@dataclasses.dataclass
class SurfaceDay:
    """One day's surface and everything that went into it (tables are ``pyarrow.Table``)."""

    date: _dt.date
    cut_ns: int
    valid: bool
    reason: str  # why the day is not valid ("" when it is)
    quotes: Any  # one row per option of the snapshot's chains (QUOTES_SCHEMA)
    forwards: Any  # one row per expiry slice (FORWARDS_SCHEMA)
    svi: Any  # one row per expiry slice (SVI_SCHEMA)
    grids: DayGrids | None  # None on invalid days or when no slice could be fitted
    surface: FittedSurface | None
    counts: dict[str, Any]
    timings: dict[str, float]  # seconds per stage (STAGES)
    config: SurfaceConfig
    warnings: list[str] = dataclasses.field(default_factory=list)


def _col_np(table: Any, name: str, rows: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
    import pyarrow.compute as pc

    if name not in table.column_names:
        return np.full(rows.size, fill, dtype=dtype)
    a = np.asarray(pc.fill_null(table.column(name), fill).to_numpy(zero_copy_only=False), dtype=dtype)
    return a[rows]


def _status_counts(codes: np.ndarray, enum_cls: Any) -> dict[str, int]:
    vals, cnt = np.unique(np.asarray(codes), return_counts=True)
    return {enum_cls(int(v)).name.lower(): int(c) for v, c in zip(vals, cnt, strict=True)}


def surface_day(
    table: Any,
    *,
    cut_ns: int,
    date: _dt.date | None = None,
    config: SurfaceConfig | None = None,
    threads: int | None = None,
    dataset: str | None = None,
) -> SurfaceDay:
    """Build one day's surface from a snapshot table.

    Parameters
    ----------
    table : pyarrow.Table
        A snapshot (:data:`volfast.snapshot.SNAPSHOT_SCHEMA`: ``SnapshotResult.table`` or a
        ``volfast snapshot`` partition).
    cut_ns : int
        The snapshot's cut, UTC nanoseconds; year fractions (ACT/365) are measured from it.
    date : datetime.date, optional
        The trading date (default: the cut's UTC date).
    config : SurfaceConfig, optional
    threads : int, optional
        Threads for the C++ implied-vol solver and the Numba SVI fits.
    dataset : str, optional
        The Databento dataset the quotes came from (``"OPRA.PILLAR"``, ``"GLBX.MDP3"``): with
        ``config.exercise == "auto"`` an OPRA dataset means American-style options.

    Returns
    -------
    SurfaceDay
        Never raises for bad quotes or expiries: they are statuses with reasons.
    """
    from volfast.forward import ForwardStatus, implied_forward, option_chains
    from volfast.svi import SVIStatus, fit_svi

    cfg = config or SurfaceConfig()
    american = cfg.exercise == "american" or (
        cfg.exercise == "auto" and dataset is not None and str(dataset).upper().startswith("OPRA")
    )
    side = "otm" if american else cfg.side
    if date is None:
        date = _dt.datetime.fromtimestamp(cut_ns / 1e9, tz=_dt.timezone.utc).date()
    timings: dict[str, float] = {}
    warns: list[str] = []
    t0 = time.perf_counter()

    # -- chains
    ch = option_chains(table, cut_ns=cut_ns)
    off = ch.offsets
    ns = len(ch)
    n = int(off[-1])
    stale = _col_np(table, "stale", ch.row, False, bool)
    sid = np.repeat(np.arange(ns), np.diff(off))
    labels = [f"{ch.underlying[i]} {str(ch.expiration[i])[:10]}" for i in range(ns)]
    t1 = time.perf_counter()
    timings["chains"] = t1 - t0
    if american and cfg.side != "otm":
        warns.append(f"american exercise: vols from out-of-the-money quotes only (side {cfg.side!r} ignored)")

    # -- forwards (stale quotes left out when drop_stale: their prices are from another market)
    bid, ask = ch.bid, ch.ask
    if cfg.drop_stale:
        bid = np.where(stale, np.nan, bid)
        ask = np.where(stale, np.nan, ask)
    given_r = cfg.rates(ch.expiry_years)
    given_d = None if given_r is None else np.exp(-given_r * ch.expiry_years)
    premium = np.zeros(n)
    deam = None
    if ns:

        def parity(b: np.ndarray, a: np.ndarray, raw: bool, d_est: np.ndarray | None = None) -> Any:
            # raw American quotes: near the money only; de-Americanised ones: a Huber fit over 2 ATM sd
            # (the CBOE rule stays as it is, for comparison)
            wide = not raw and cfg.forward_method != "naive"
            return implied_forward(
                strike=ch.strike,
                is_call=ch.is_call,
                bid=b,
                ask=a,
                expiry_years=ch.expiry_years,
                offsets=off,
                method=cfg.forward_method,
                discount_factor=given_d if given_d is not None else d_est,
                rate_band=cfg.rate_band,
                window=(2.0 if wide else cfg.american_window) if american else 4.0,
                # American parity is a band (S - K <= C - P <= S - K e^{-rT} without dividends), not a
                # line: synthetics off the fitted line are expected, so they do not make the expiry
                # infeasible
                max_outside=1.0 if american else 0.5,
            )

        if american and cfg.deamericanise:
            from volfast.forward.american import deamericanise

            deam = deamericanise(
                parity,
                strike=ch.strike,
                is_call=ch.is_call,
                bid=bid,
                ask=ask,
                expiry_years=ch.expiry_years,
                offsets=off,
                underlying=ch.underlying,
                estimate_discount=given_d is None,
                threads=threads,
            )
            fw, premium = deam.fit, deam.premium
            if not deam.converged:
                warns.append(
                    f"de-Americanisation stopped after {deam.iterations} iterations with forwards still "
                    f"moving by {deam.max_change * 1e4:.3g} bp"
                )
        else:
            fw = parity(bid, ask, True)
        F_s, D_s, fw_ok = fw.forward, fw.discount_factor, fw.ok
    else:
        fw = None
        F_s = D_s = np.zeros(0)
        fw_ok = np.zeros(0, dtype=bool)
    t2 = time.perf_counter()
    timings["forwards"] = t2 - t1

    # -- vols
    F_r = np.where(fw_ok, F_s, np.nan)[sid]
    D_r = np.where(fw_ok, D_s, np.nan)[sid]
    T_r = ch.expiry_years[sid]
    qv = quote_vols(
        strike=ch.strike,
        is_call=ch.is_call,
        # American quotes de-Americanised: the vols are those of the European-equivalent prices
        bid=ch.bid - premium,
        ask=ch.ask - premium,
        forward=F_r,
        expiry_years=T_r,
        discount_factor=D_r,
        stale=stale,
        side=side,
        drop_stale=cfg.drop_stale,
        threads=threads,
    )
    t3 = time.perf_counter()
    timings["vols"] = t3 - t2

    # -- SVI on the usable quotes of every slice
    use = qv.use
    u_idx = np.flatnonzero(use)  # rows stay grouped by slice (chains are slice-ordered)
    u_off = np.concatenate([[0], np.cumsum(np.bincount(sid[use], minlength=ns))]).astype(np.int64)
    k_u = qv.log_moneyness[u_idx]
    T_u = T_r[u_idx]
    w_mid = qv.mid_iv[u_idx] ** 2 * T_u
    w_bid = qv.bid_iv[u_idx] ** 2 * T_u
    w_ask = qv.ask_iv[u_idx] ** 2 * T_u
    if ns:
        sv = fit_svi(
            k_u,
            w_mid,
            u_off,
            expiry_years=ch.expiry_years,
            arbitrage_free=cfg.arbitrage == "enforce",
            robust=cfg.robust,
            bid_total_variance=w_bid,
            ask_total_variance=w_ask,
            max_rmse=cfg.max_rmse,
            threads=threads,
        )
        sv_ok = np.asarray(sv.ok, dtype=bool)
        params = sv.params
    else:
        sv = None
        sv_ok = np.zeros(0, dtype=bool)
        params = np.zeros((0, 5))
    t4 = time.perf_counter()
    timings["svi"] = t4 - t3

    # -- validity
    k_min, k_max, n_strikes = expiry_coverage(qv.log_moneyness, ch.strike, use, off)
    fit_ok = fw_ok & sv_ok
    w0 = np.full(ns, np.nan)
    if ns and sv_ok.any():
        with np.errstate(invalid="ignore"):
            w0[sv_ok] = svi_total_variance(np.zeros(int(sv_ok.sum())), params[sv_ok])
    atm_sd = atm_std_dev(qv.log_moneyness, qv.mid_iv, use, off, ch.expiry_years, w0)
    exp_ok, exp_why = check_expiries(k_min, k_max, n_strikes, fit_ok, cfg.validity, atm_sd)
    if ns == 0:
        verdict = DayValidity(False, "no option chains in the snapshot", exp_ok, exp_why)
    else:
        verdict = DayValidity.decide(exp_ok, exp_why, labels, cfg.validity)
    t5 = time.perf_counter()
    timings["validity"] = t5 - t4

    # -- the surface and its grids (valid days only)
    pick = fit_ok & (exp_ok if cfg.grid_expiries == "valid" else True)
    surface = None
    grids = None
    chosen = _one_slice_per_expiry(np.flatnonzero(pick), ch.expiry_years, np.diff(u_off))
    if chosen.size:
        surface = FittedSurface(
            expiry_years=ch.expiry_years[chosen], params=params[chosen], extrapolation=cfg.extrapolation
        )
        if verdict.valid:
            grids = day_grids(date, surface, ch.expiry_years[chosen], cfg.grids)
    t6 = time.perf_counter()
    timings["grids"] = t6 - t5

    # -- tables
    fit_iv = np.full(n, np.nan)
    has_fit = sv_ok[sid] & np.isfinite(qv.log_moneyness)
    if has_fit.any():
        with np.errstate(invalid="ignore"):
            w_fit = svi_total_variance(qv.log_moneyness[has_fit], params[sid[has_fit]])
            fit_iv[has_fit] = np.sqrt(np.where(w_fit > 0, w_fit, np.nan) / T_r[has_fit])
    inside = np.full(n, False)
    inside[u_idx] = (fit_iv[u_idx] >= qv.bid_iv[u_idx] - 1e-12) & (fit_iv[u_idx] <= qv.ask_iv[u_idx] + 1e-12)

    quotes = _quotes_table(table, ch, sid, stale, F_r, D_r, T_r, qv, fit_iv, inside, premium)
    forwards = _forwards_table(ch, fw, labels)
    svi = _svi_table(
        ch,
        fw_ok,
        F_s,
        sv,
        params,
        np.diff(u_off),
        k_min,
        k_max,
        n_strikes,
        exp_ok,
        exp_why,
        chosen,
        labels,
        checked=cfg.arbitrage != "off",
    )
    fw_codes = fw.status if fw is not None else np.zeros(0, np.uint8)
    sv_codes = sv.status if sv is not None else np.zeros(0, np.uint8)
    counts: dict[str, Any] = {
        "options": n,
        "quotes_used": int(use.sum()),
        "quotes_inside_bid_ask": int(inside.sum()),
        "expiries": ns,
        "expiries_with_forward": int(fw_ok.sum()),
        "expiries_fitted": int(fit_ok.sum()),
        "expiries_valid": int(exp_ok.sum()),
        "expiries_in_surface": int(chosen.size),
        "quote_status": qv.status_counts(),
        "forward_status": _status_counts(fw_codes, ForwardStatus),
        "svi_status": _status_counts(sv_codes, SVIStatus),
        "quotes_off_side": int(((qv.status == QuoteStatus.OK) & ~qv.on_side).sum()),
    }
    counts["exercise"] = "american" if american else "european"
    if deam is not None:
        counts["deamericanise"] = {
            "iterations": deam.iterations,
            "converged": bool(deam.converged),
            "max_forward_change_bp": float(deam.max_change * 1e4),
            "quotes_with_premium": int((premium > 0).sum()),
            "rate_from_forwards": None if not np.isfinite(deam.rate) else float(deam.rate),
        }  # its time is in timings["forwards"] (counts stay reproducible)
    counts["discount_source"] = "given rate" if given_r is not None else "quotes"
    if sv is not None and cfg.arbitrage != "off":
        bf = int((sv_ok & ~np.asarray(sv.butterfly_ok, dtype=bool)).sum())
        cal = int((sv_ok & ~np.asarray(sv.calendar_ok, dtype=bool)).sum())
        counts["slices_butterfly_arbitrage"] = bf
        counts["slices_calendar_arbitrage"] = cal
        if cfg.arbitrage == "check" and (bf or cal):
            warns.append(
                f"arbitrage check: {bf} slice(s) with butterfly and {cal} with calendar arbitrage "
                "(svi table: butterfly_ok / calendar_ok)"
            )
    if ns and not fw_ok.any():
        warns.append("no expiry has a forward")
    timings["tables"] = time.perf_counter() - t6
    return SurfaceDay(
        date=date,
        cut_ns=int(cut_ns),
        valid=verdict.valid,
        reason=verdict.reason,
        quotes=quotes,
        forwards=forwards,
        svi=svi,
        grids=grids,
        surface=surface,
        counts=counts,
        timings=timings,
        config=cfg,
        warnings=warns,
    )


def _one_slice_per_expiry(idx: np.ndarray, expiry_years: np.ndarray, n_used: np.ndarray) -> np.ndarray:
    """Among slices sharing an expiry (several underlyings), keep the one with the most quotes."""
    best: dict[float, int] = {}
    for i in idx:
        t = float(expiry_years[i])
        if t not in best or n_used[i] > n_used[best[t]]:
            best[t] = int(i)
    return np.array(sorted(best.values(), key=lambda i: expiry_years[i]), dtype=np.int64)


# -- output tables ----------------------------------------------------------------------------------------
def _ts(a: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(np.asarray(a, dtype="datetime64[ns]"), type=pa.timestamp("ns", tz="UTC"))


def _quotes_table(
    table: Any,
    ch: Any,
    sid: np.ndarray,
    stale: np.ndarray,
    F: np.ndarray,
    D: np.ndarray,
    T: np.ndarray,
    qv: Any,
    fit_iv: np.ndarray,
    inside: np.ndarray,
    premium: np.ndarray,
) -> Any:
    import pyarrow as pa

    from volfast.surface.schemas import QUOTES_SCHEMA

    raw = _col_np(table, "raw_symbol", ch.row, "", object)
    cols = {
        "slice": sid.astype(np.int16),
        "instrument_id": ch.instrument_id,
        "raw_symbol": pa.array(raw.astype(str).tolist(), pa.string()),
        "underlying": pa.array([str(ch.underlying[i]) for i in sid], pa.string()),
        "expiration": _ts(ch.expiration[sid]),
        "expiry_years": T,
        "strike": ch.strike,
        "is_call": ch.is_call,
        "bid": ch.bid,
        "ask": ch.ask,
        # the quote's own mid (qv.mid is the European-equivalent one), where the quote has a two-sided mid
        "mid": np.where(np.isfinite(qv.mid), 0.5 * (ch.bid + ch.ask), np.nan),
        "stale": stale,
        "forward": F,
        "discount_factor": D,
        "log_moneyness": qv.log_moneyness,
        "bid_iv": qv.bid_iv,
        "ask_iv": qv.ask_iv,
        "mid_iv": qv.mid_iv,
        "bid_iv_status": qv.bid_iv_status,
        "ask_iv_status": qv.ask_iv_status,
        "mid_iv_status": qv.mid_iv_status,
        "status": qv.status,
        "on_side": qv.on_side,
        "used": qv.use,
        "fit_iv": fit_iv,
        "inside_bid_ask": inside,
        "exercise_premium": premium,
    }
    return pa.table(cols).cast(QUOTES_SCHEMA)


def _forwards_table(ch: Any, fw: Any, labels: list[str]) -> Any:
    import pyarrow as pa

    from volfast.surface.schemas import FORWARDS_SCHEMA

    ns = len(ch)
    if fw is None:
        return FORWARDS_SCHEMA.empty_table()
    cols = {
        "slice": np.arange(ns, dtype=np.int16),
        "underlying": pa.array([str(u) for u in ch.underlying], pa.string()),
        "expiration": _ts(ch.expiration),
        "expiry_years": ch.expiry_years,
        "n_options": np.diff(ch.offsets).astype(np.int32),
        "forward": fw.forward,
        "discount_factor": fw.discount_factor,
        "rate": fw.rate,
        "forward_lo": fw.forward_lo,
        "forward_hi": fw.forward_hi,
        "discount_lo": fw.discount_lo,
        "discount_hi": fw.discount_hi,
        "n_pairs": fw.n_pairs.astype(np.int32),
        "n_outside": fw.n_outside.astype(np.int32),
        "rmse": fw.rmse,
        "status": fw.status.astype(np.uint8),
        "reason": pa.array([str(r) for r in fw.reason], pa.string()),
        "method": pa.array([fw.method] * ns, pa.string()),
    }
    return pa.table(cols).cast(FORWARDS_SCHEMA)


def _svi_table(
    ch: Any,
    fw_ok: np.ndarray,
    F: np.ndarray,
    sv: Any,
    params: np.ndarray,
    n_used: np.ndarray,
    k_min: np.ndarray,
    k_max: np.ndarray,
    n_strikes: np.ndarray,
    exp_ok: np.ndarray,
    exp_why: list[str],
    chosen: np.ndarray,
    labels: list[str],
    checked: bool = True,
) -> Any:
    import pyarrow as pa

    from volfast.surface.schemas import SVI_SCHEMA

    ns = len(ch)
    if sv is None:
        return SVI_SCHEMA.empty_table()
    in_surface = np.zeros(ns, dtype=bool)
    in_surface[chosen] = True
    reason = []
    for i in range(ns):
        r = sv.reason[i]
        if not fw_ok[i]:
            r = "no forward" + (f" ({r})" if r else "")
        reason.append(r)
    cols = {
        "slice": np.arange(ns, dtype=np.int16),
        "underlying": pa.array([str(u) for u in ch.underlying], pa.string()),
        "expiration": _ts(ch.expiration),
        "expiry_years": ch.expiry_years,
        "forward": np.where(fw_ok, F, np.nan),
        "n_quotes": n_used.astype(np.int32),
        "n_strikes": n_strikes.astype(np.int32),
        "k_min": k_min,
        "k_max": k_max,
        "a": params[:, 0],
        "b": params[:, 1],
        "rho": params[:, 2],
        "m": params[:, 3],
        "sigma": params[:, 4],
        "rmse": sv.rmse,
        "inside_bid_ask": sv.inside_bid_ask,
        "min_g": sv.min_g,
        # arbitrage "off": not checked, so not reported (null)
        "butterfly_ok": pa.array(sv.butterfly_ok, pa.bool_()) if checked else pa.nulls(ns, pa.bool_()),
        "calendar_ok": pa.array(sv.calendar_ok, pa.bool_()) if checked else pa.nulls(ns, pa.bool_()),
        "repair": sv.repair,
        "status": sv.status.astype(np.uint8),
        "reason": pa.array(reason, pa.string()),
        "expiry_valid": exp_ok,
        "validity_reason": pa.array(exp_why, pa.string()),
        "in_surface": in_surface,
    }
    return pa.table(cols).cast(SVI_SCHEMA)
