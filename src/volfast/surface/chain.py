"""A chain from anywhere: a pandas DataFrame, a pyarrow Table or a CSV / Parquet file of option quotes ->
the same :class:`~volfast.surface.day.SurfaceDay` (and tables) as a DBN snapshot gives.

Columns (names matched case-insensitively; the first alias present wins; ``columns=`` maps them
explicitly):

================  ==========================================================================================
expiration        a timezone-aware timestamp, an ISO string, or a bare date; a bare date (or a naive time)
                  is read in ``tz``, a bare date at ``expiry_time`` (16:00 New York by default) unless a
                  ``settlement`` column says AM (09:30, e.g. SPX) or PM (16:00). Aliases: expiry,
                  expiration_date, expiry_date, expirationdate, maturity, exp_date.
strike            index points. Aliases: strike_price.
cp / is_call      'C' / 'P' (or call / put, any case); or a boolean ``is_call``. Aliases: call_put,
                  put_call, right, option_type, type, side, cp_flag.
bid, ask          premiums in index points; empty = no quote; a zero bid = no bid. Aliases: bid_price,
                  ask_price, offer.
underlying        optional; slices are (underlying, expiration). ``root`` is preferred when present
                  (SPX and SPXW are different option classes of one index).
bid_size,         optional.
ask_size
settlement        optional AM / PM (aliases settlement_style, settle): the expiry time of a bare date.
option_symbol     optional, kept as ``raw_symbol`` (aliases raw_symbol, symbol_option, occ_symbol).
================  ==========================================================================================

A missing column, an unparseable expiration, or a side that is not C/P is an error naming the column and
the row (:class:`ChainError`, one line). Rows with a strike or price that is not a number (or a strike
<= 0) are skipped and counted (``counts["rows_skipped"]``, by reason); empty bid / ask cells are missing
sides, not bad rows. Expirations at or before ``asof`` are dropped and counted. In the output tables
``instrument_id`` is the input row (0-based), so results join back to the input.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from volfast.errors import UsageError, VolfastError

__all__ = ["COLUMN_ALIASES", "ChainError", "from_quotes", "quotes_table"]

#: Logical column -> names looked for, in order (lower case).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "expiration": (
        "expiration",
        "expiry",
        "expiration_date",
        "expiry_date",
        "expirationdate",
        "maturity",
        "exp_date",
    ),
    "strike": ("strike", "strike_price"),
    "cp": ("cp", "call_put", "put_call", "right", "option_type", "type", "side", "cp_flag"),
    "is_call": ("is_call",),
    "bid": ("bid", "bid_price", "bid_px"),
    "ask": ("ask", "ask_price", "offer", "ask_px"),
    "underlying": ("root", "underlying", "underlying_symbol"),
    "bid_size": ("bid_size", "bid_sz", "bidsize"),
    "ask_size": ("ask_size", "ask_sz", "asksize"),
    "settlement": ("settlement", "settlement_style", "settle"),
    "option_symbol": ("option_symbol", "raw_symbol", "occ_symbol"),
}
_OPTIONAL = ("underlying", "bid_size", "ask_size", "settlement", "option_symbol")
_SETTLEMENT_TIMES = {"AM": "09:30", "PM": "16:00"}
_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$|^\s*\d{8}\s*$")
_NS = 1_000_000_000


class ChainError(VolfastError, ValueError):
    """A chain cannot be read: a missing column, an unparseable time, a side that is not C or P (the message
    names the file, the column and the row)."""


def _hhmm(text: str, what: str) -> _dt.time:
    try:
        return _dt.time.fromisoformat(str(text).strip())
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a time of day HH:MM") from None


def _load(quotes: Any) -> tuple[Any, str, int]:
    """(pandas DataFrame of strings/values, a name for messages, the line of the first data row)."""
    import pandas as pd

    if isinstance(quotes, (str, os.PathLike)):
        p = Path(quotes)
        if not p.is_file():
            raise ChainError(f"{p}: no such file")
        suffix = "".join(p.suffixes[-2:]).lower()
        try:
            if suffix.endswith(".parquet") or suffix.endswith(".pq"):
                import pyarrow.parquet as pq

                return pq.read_table(p).to_pandas(), str(p), 0
            # every column as text: numbers are parsed below, so a bad cell is a counted row, not a crash
            return (
                pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"),
                str(p),
                2,
            )
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ChainError(f"{p}: cannot read the chain ({first})") from None
    if isinstance(quotes, pd.DataFrame):
        return quotes.reset_index(drop=True), "quotes (DataFrame)", 0
    try:
        import pyarrow as pa

        if isinstance(quotes, (pa.Table, pa.RecordBatch)):
            return quotes.to_pandas(), "quotes (Arrow table)", 0
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pass
    raise ChainError(
        "quotes must be a pandas DataFrame, a pyarrow Table or a CSV / Parquet path, "
        f"got {type(quotes).__name__}"
    )


def _resolve(df: Any, columns: Mapping[str, str] | None, name: str) -> dict[str, str]:
    """Logical column -> the frame's column."""
    have = {str(c).strip().lower(): c for c in df.columns}
    out: dict[str, str] = {}
    given = dict(columns or {})
    unknown = set(given) - set(COLUMN_ALIASES)
    if unknown:
        raise UsageError(
            f"columns=: unknown logical column(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(COLUMN_ALIASES)})"
        )
    for logical, aliases in COLUMN_ALIASES.items():
        if logical in given:
            col = given[logical]
            if str(col).strip().lower() not in have:
                raise ChainError(f"{name}: columns= maps {logical} to {col!r}, which is not a column")
            out[logical] = have[str(col).strip().lower()]
            continue
        for a in aliases:
            if a in have:
                out[logical] = have[a]
                break
    found = ", ".join(str(c) for c in df.columns)
    for logical in ("expiration", "strike", "bid", "ask"):
        if logical not in out:
            raise ChainError(
                f"{name}: no {logical!r} column (looked for {', '.join(COLUMN_ALIASES[logical])}; "
                f"found {found}; map one with columns={{'{logical}': NAME}})"
            )
    if "cp" not in out and "is_call" not in out:
        raise ChainError(
            f"{name}: no 'cp' (C/P) or 'is_call' column (looked for "
            f"{', '.join(COLUMN_ALIASES['cp'] + COLUMN_ALIASES['is_call'])}; found {found})"
        )
    return out


def _text(values: Any) -> np.ndarray:
    """Stripped strings (object array); missing cells are ""."""
    import pandas as pd

    ser = pd.Series(values).astype(object).reset_index(drop=True)
    miss = ser.isna().to_numpy()
    out = ser.astype(str).str.strip().to_numpy(dtype=object)
    out[miss] = ""
    return out


def _row(i: int, first_line: int) -> str:
    return f"row {i + 1}" + (f" (line {i + first_line})" if first_line else "")


def _sides(df: Any, cols: dict[str, str], name: str, first_line: int) -> np.ndarray:
    if "cp" in cols:
        t = np.char.upper(_text(df[cols["cp"]]).astype(str))
        call = np.isin(t, ("C", "CALL", "CALLS"))
        put = np.isin(t, ("P", "PUT", "PUTS"))
        bad = np.flatnonzero(~(call | put))
        if bad.size:
            i = int(bad[0])
            raise ChainError(
                f"{name}: column {cols['cp']!r}, {_row(i, first_line)}: "
                f"side {str(_text(df[cols['cp']])[i])!r} is not C or P"
                + (f" ({bad.size} such rows)" if bad.size > 1 else "")
            )
        return call
    raw = df[cols["is_call"]]
    t = np.char.lower(_text(raw).astype(str))
    true = np.isin(t, ("true", "1", "t", "yes", "c", "call"))
    false = np.isin(t, ("false", "0", "f", "no", "p", "put"))
    bad = np.flatnonzero(~(true | false))
    if bad.size:
        i = int(bad[0])
        raise ChainError(
            f"{name}: column {cols['is_call']!r}, {_row(i, first_line)}: "
            f"{str(t[i])!r} is not a boolean (true/false)"
        )
    return true


def _numbers(df: Any, col: str) -> tuple[np.ndarray, np.ndarray]:
    """(float values, bad mask): empty cells are NaN and not bad; text that is not a number is bad."""
    import pandas as pd

    s = df[col]
    if pd.api.types.is_numeric_dtype(s.dtype):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        return v, np.zeros(v.size, dtype=bool)
    t = _text(s)
    v = pd.to_numeric(pd.Series(t, dtype=object).replace("", np.nan), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(v) & (t != "")
    return v, bad


def _expirations(
    df: Any,
    cols: dict[str, str],
    name: str,
    first_line: int,
    tz: ZoneInfo,
    expiry_time: _dt.time,
) -> np.ndarray:
    """UTC nanoseconds per row."""
    import pandas as pd

    col = cols["expiration"]
    raw = df[col]
    settle = None
    if "settlement" in cols:
        settle = np.char.upper(_text(df[cols["settlement"]]).astype(str))
        bad = np.flatnonzero(~np.isin(settle, ("AM", "PM", "")))
        if bad.size:
            i = int(bad[0])
            raise ChainError(
                f"{name}: column {cols['settlement']!r}, {_row(i, first_line)}: "
                f"settlement {str(settle[i])!r} "
                "is not AM or PM"
            )
    out = np.empty(len(raw), dtype=np.int64)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ts = pd.DatetimeIndex(raw)
        if ts.isna().any():
            i = int(np.flatnonzero(ts.isna())[0])
            raise ChainError(f"{name}: column {col!r}, {_row(i, first_line)}: missing expiration")
        if ts.tz is None:
            ts = ts.tz_localize(tz)
        return ts.tz_convert("UTC").asi8.astype(np.int64)
    values = raw.to_numpy(dtype=object)
    text = _text(values)
    key = text if settle is None else np.char.add(np.char.add(text.astype(str), "|"), settle.astype(str))
    uniq, first, inverse = np.unique(np.asarray(key, dtype=str), return_index=True, return_inverse=True)
    parsed = np.empty(uniq.size, dtype=np.int64)
    for u in np.argsort(first):  # each distinct (expiration, settlement) once, in row order
        i = int(first[u])
        v = values[i]
        key_s = "" if settle is None else str(settle[i])
        if isinstance(v, (_dt.datetime, pd.Timestamp)):
            t = pd.Timestamp(v)
            parsed[u] = int((t.tz_localize(tz) if t.tzinfo is None else t).tz_convert("UTC").value)
            continue
        txt = v.isoformat() if isinstance(v, _dt.date) else str(text[i])
        if not txt or txt.lower() in ("nan", "nat", "none"):
            raise ChainError(f"{name}: column {col!r}, {_row(i, first_line)}: missing expiration")
        try:
            if _DATE_ONLY.match(txt):
                d = (
                    _dt.date.fromisoformat(txt)
                    if "-" in txt
                    else _dt.datetime.strptime(txt.strip(), "%Y%m%d").date()
                )
                hm = _hhmm(_SETTLEMENT_TIMES[key_s], "settlement") if key_s else expiry_time
                t = pd.Timestamp(_dt.datetime.combine(d, hm), tz=tz)
            else:
                t = pd.Timestamp(txt)
                if t.tzinfo is None:
                    t = t.tz_localize(tz)
        except (ValueError, TypeError, OverflowError):
            raise ChainError(
                f"{name}: column {col!r}, {_row(i, first_line)}: cannot parse expiration {txt!r} "
                "(ISO date or date-time, e.g. 2025-12-19 or 2025-12-19T16:00-05:00)"
            ) from None
        parsed[u] = int(t.tz_convert("UTC").value)
    out[:] = parsed[inverse.reshape(-1)]
    return out


def parse_asof(asof: Any, *, tz: str = "America/New_York", default_time: str = "16:00") -> int:
    """UTC nanoseconds of the quotes' time: a timezone-aware datetime / ISO string, a naive one (read in
    ``tz``), or a bare date (``default_time`` in ``tz``); raises :class:`~volfast.errors.UsageError`."""
    import pandas as pd

    zone = ZoneInfo(tz)
    try:
        if isinstance(asof, (int, np.integer)):
            return int(asof)
        if isinstance(asof, _dt.datetime) or isinstance(asof, pd.Timestamp):
            t = pd.Timestamp(asof)
        elif isinstance(asof, _dt.date):
            t = pd.Timestamp(_dt.datetime.combine(asof, _dt.time.fromisoformat(default_time)))
        else:
            text = str(asof).strip()
            if _DATE_ONLY.match(text):
                d = (
                    _dt.date.fromisoformat(text)
                    if "-" in text
                    else _dt.datetime.strptime(text, "%Y%m%d").date()
                )
                t = pd.Timestamp(_dt.datetime.combine(d, _dt.time.fromisoformat(default_time)))
            else:
                t = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(
            f"asof: cannot parse {asof!r} (ISO date-time, e.g. 2025-10-01T16:00:00-04:00)"
        ) from None
    if t.tzinfo is None:
        t = t.tz_localize(zone)
    return int(t.tz_convert("UTC").value)


def quotes_table(
    quotes: Any,
    *,
    asof: Any,
    columns: Mapping[str, str] | None = None,
    expiry_time: str = "16:00",
    tz: str = "America/New_York",
) -> tuple[Any, int, dict[str, Any]]:
    """A chain as a snapshot table (:data:`volfast.snapshot.SNAPSHOT_SCHEMA`), the cut and the input counts.

    Parameters are those of :func:`from_quotes`. Returns ``(table, asof_ns, counts)``.
    """
    import pyarrow as pa

    from volfast.snapshot.core import SNAPSHOT_SCHEMA

    try:
        zone = ZoneInfo(tz)
    except Exception:
        raise UsageError(f"tz: unknown time zone {tz!r}") from None
    cut_ns = parse_asof(asof, tz=tz, default_time=expiry_time)
    hm = _hhmm(expiry_time, "expiry_time")
    df, name, first_line = _load(quotes)
    cols = _resolve(df, columns, name)
    n = len(df)
    call = _sides(df, cols, name, first_line)
    exp_ns = _expirations(df, cols, name, first_line, zone, hm)
    strike, bad_k = _numbers(df, cols["strike"])
    bid, bad_b = _numbers(df, cols["bid"])
    ask, bad_a = _numbers(df, cols["ask"])
    with np.errstate(invalid="ignore"):
        bad_k |= ~(np.isfinite(strike) & (strike > 0))
    skipped = {
        "strike not a positive number": int(bad_k.sum()),
        "bid not a number": int((bad_b & ~bad_k).sum()),
        "ask not a number": int((bad_a & ~bad_k & ~bad_b).sum()),
    }
    keep = ~(bad_k | bad_b | bad_a)
    expired = keep & (exp_ns <= cut_ns)
    keep &= ~expired

    def opt_num(key: str) -> np.ndarray:
        if key not in cols:
            return np.zeros(n)
        v, _ = _numbers(df, cols[key])
        return np.where(np.isfinite(v) & (v >= 0), v, 0.0)

    und = _text(df[cols["underlying"]]).astype(str) if "underlying" in cols else np.full(n, "", dtype=object)
    sym = (
        _text(df[cols["option_symbol"]]).astype(str)
        if "option_symbol" in cols
        else np.full(n, "", dtype=object)
    )
    bsz, asz = opt_num("bid_size"), opt_num("ask_size")
    idx = np.flatnonzero(keep)
    b, a = bid[idx], ask[idx]
    has_b, has_a = np.isfinite(b), np.isfinite(a)
    ts = pa.timestamp("ns", tz="UTC")
    m = idx.size
    table = pa.table(
        {
            "instrument_id": pa.array(idx.astype(np.uint32)),
            "raw_symbol": pa.array([str(s) for s in sym[idx]], pa.string()),
            "underlying": pa.array([str(u) for u in und[idx]], pa.string()),
            "asset": pa.array([str(u) for u in und[idx]], pa.string()),
            "instrument_class": pa.array(np.where(call[idx], "C", "P").tolist(), pa.string()),
            "is_call": pa.array(call[idx], pa.bool_()),
            "strike": pa.array(strike[idx], pa.float64()),
            "expiration": pa.array(exp_ns[idx], pa.int64()).cast(ts),
            "multiplier": pa.array(np.full(m, np.nan), pa.float64()),
            "tick": pa.array(np.full(m, np.nan), pa.float64()),
            "bid": pa.array(b, pa.float64()),
            "ask": pa.array(a, pa.float64()),
            "bid_size": pa.array(np.minimum(bsz[idx], 2**32 - 1).astype(np.uint32)),
            "ask_size": pa.array(np.minimum(asz[idx], 2**32 - 1).astype(np.uint32)),
            "ts_recv": pa.array(np.full(m, cut_ns, dtype=np.int64), pa.int64()).cast(ts),
            "age_s": pa.array(np.zeros(m), pa.float64()),
            "n_venues": pa.array(np.ones(m, dtype=np.uint16)),
            "has_quote": pa.array(has_b | has_a, pa.bool_()),
            "crossed": pa.array(has_b & has_a & (b > a), pa.bool_()),
            "locked": pa.array(has_b & has_a & (b == a), pa.bool_()),
            "one_sided": pa.array(has_b ^ has_a, pa.bool_()),
            "stale": pa.array(np.zeros(m, dtype=bool), pa.bool_()),
            "definition_source": pa.array(["quotes"] * m, pa.string()),
        }
    ).cast(SNAPSHOT_SCHEMA)
    counts = {
        "rows": n,
        "rows_used": int(m),
        "rows_skipped": {k: v for k, v in skipped.items() if v},
        "rows_expired": int(expired.sum()),
        "columns": {k: str(v) for k, v in cols.items()},
    }
    return table, cut_ns, counts


def from_quotes(
    quotes: Any,
    *,
    asof: Any,
    rate: float | Any = None,
    config: Any = None,
    columns: Mapping[str, str] | None = None,
    expiry_time: str = "16:00",
    tz: str = "America/New_York",
    dataset: str | None = None,
    threads: int | None = None,
) -> Any:
    """One day's surface from a chain of option quotes (see the module docstring for the columns).

    Parameters
    ----------
    quotes : pandas.DataFrame, pyarrow.Table, or path to a ``.csv`` / ``.parquet`` file
    asof : datetime, ISO string, or date
        When the quotes were taken: year fractions (ACT/365) run from it to each expiration. A naive time is
        read in ``tz``; a bare date means ``expiry_time`` (the close) on that date.
    rate : float, or sequence of (tenor_years, rate) pairs, optional
        Continuously compounded ACT/365 zero rate (fraction) or curve; overrides ``config.rate`` /
        ``config.rate_curve``. Given, every expiry's D = exp(-r T) exactly and the forward is fitted by
        parity with it; otherwise D comes from the quotes (box spreads / pooled curve, flagged when not
        identified).
    config : SurfaceConfig, optional
    columns : mapping, optional
        Logical column -> the input's column name, e.g. ``{"expiration": "ExpDate", "cp": "PutCall"}``.
    expiry_time : str
        Time of day (in ``tz``) of an expiration given as a bare date, unless a settlement column says AM
        (09:30) or PM (16:00).
    tz : str
        IANA zone of bare dates and naive times.
    dataset : str, optional
        Where the quotes come from (e.g. ``"OPRA.PILLAR"``): with ``config.exercise == "auto"`` an OPRA
        dataset means American exercise.
    threads : int, optional

    Returns
    -------
    SurfaceDay
        ``counts["input"]`` has the rows read, used, skipped (by reason) and expired.

    Raises
    ------
    ChainError
        A missing column, an unparseable expiration, a side that is not C/P (naming column and row).
    UsageError
        Bad settings (asof, tz, expiry_time, rate).
    """
    import dataclasses

    from volfast.surface.day import SurfaceConfig, _check_curve, surface_day

    cfg = config or SurfaceConfig()
    if rate is not None:
        if np.ndim(rate) == 0:
            cfg = dataclasses.replace(cfg, rate=float(rate), rate_curve=None)
        else:
            cfg = dataclasses.replace(cfg, rate=None, rate_curve=_check_curve(rate))
    table, cut_ns, counts = quotes_table(quotes, asof=asof, columns=columns, expiry_time=expiry_time, tz=tz)
    date = _dt.datetime.fromtimestamp(cut_ns / _NS, tz=_dt.timezone.utc).astimezone(ZoneInfo(tz)).date()
    day = surface_day(table, cut_ns=cut_ns, date=date, config=cfg, threads=threads, dataset=dataset)
    day.counts["input"] = counts
    if counts["rows_skipped"]:
        day.warnings.append(
            "rows skipped: " + ", ".join(f"{v} with {k}" for k, v in counts["rows_skipped"].items())
        )
    if counts["rows_expired"]:
        day.warnings.append(f"{counts['rows_expired']} rows expire at or before asof (left out)")
    return day
