"""Quote snapshot: the last top of book per instrument as of a cut time, over a look-back window.

Rule (the C++ reducer in ``volfast._core.snapshot`` implements it; ``_reference.py`` is the pandas statement):

* A record is in the window when ``cut - lookback <= ts_recv <= cut`` (UTC nanoseconds, both ends inclusive).
* Per instrument the in-window record with the largest ``ts_recv`` is kept; on equal ``ts_recv`` the later
  record in file order wins (files of one day are read in the order given).
* Per-venue feeds (OPRA ``mbp-1``, ``tbbo``, ``bbo-*``; ``venues="auto"``) keep each venue's (publisher_id's)
  last in-window quote and consolidate: bid = max defined venue bid, bid_size = sum of venue sizes at that
  bid;
  ask = min defined venue ask, ask_size = sum at that ask; ts_recv = latest ts_recv among venues at the best
  bid or best ask. Consolidated schemas (``cbbo-*``, ``cmbp-1``, ``tcbbo``) are taken as they are.
* Flags: ``crossed`` bid > ask, ``locked`` bid == ask (both sides present), ``one_sided`` exactly one side
  missing (``UNDEF_PRICE``; its size is reported as 0), ``stale`` age > ``stale_after`` (default 60 s).
  An instrument with records in the
  file but none in the window gets a row with ``has_quote`` false, NaN prices and all flags false.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from volfast.errors import UsageError, VolfastError
from volfast.io.dbn import (
    CONSOLIDATED_SCHEMAS,
    QUOTE_SCHEMAS,
    DBNFile,
    DBNReadError,
    IngestWarning,
    _as_date,
    dataset_from_filename,
    find_day_files,
)
from volfast.io.definitions import Definitions, definitions_from_symbology, load_definitions

__all__ = [
    "SNAPSHOT_SCHEMA",
    "SnapshotError",
    "SnapshotResult",
    "parse_duration",
    "resolve_cut",
    "check_tz",
    "snapshot",
    "snapshot_schema",
    "take_snapshot",
]

_UNDEF_PRICE = np.iinfo(np.int64).max
_NS = 1_000_000_000
_SYMBOL_SOURCES = ("occ_symbol", "cme_symbol")


class SnapshotError(VolfastError, ValueError):
    """A snapshot cannot be made (no quote file for the day, inconsistent inputs)."""


class SnapshotSettingsError(SnapshotError, UsageError):
    """A snapshot setting that cannot work (time zone, duration, cut, venues); exit code 2 in the CLI."""


def snapshot_schema() -> Any:
    """The pinned Arrow schema of snapshot output (one row per instrument)."""
    import pyarrow as pa

    ts = pa.timestamp("ns", tz="UTC")
    return pa.schema(
        [
            pa.field("instrument_id", pa.uint32(), nullable=False),
            pa.field("raw_symbol", pa.string()),
            pa.field("underlying", pa.string()),
            pa.field("asset", pa.string()),
            pa.field("instrument_class", pa.string()),  # C, P, F, ... (Databento's codes)
            pa.field("is_call", pa.bool_()),  # null unless C or P
            pa.field("strike", pa.float64()),  # price units; NaN when not an option
            pa.field("expiration", ts),
            pa.field("multiplier", pa.float64()),
            pa.field("tick", pa.float64()),
            pa.field("bid", pa.float64()),  # price units (index points for ES); NaN when missing
            pa.field("ask", pa.float64()),
            pa.field("bid_size", pa.uint32()),
            pa.field("ask_size", pa.uint32()),
            pa.field("ts_recv", ts),  # null when no quote in the window
            pa.field("age_s", pa.float64()),  # (cut - ts_recv) seconds
            pa.field("n_venues", pa.uint16()),
            pa.field("has_quote", pa.bool_(), nullable=False),
            pa.field("crossed", pa.bool_(), nullable=False),
            pa.field("locked", pa.bool_(), nullable=False),
            pa.field("one_sided", pa.bool_(), nullable=False),
            pa.field("stale", pa.bool_(), nullable=False),
            pa.field(
                "definition_source", pa.string(), nullable=False
            ),  # definition/occ_symbol/cme_symbol/missing
        ],
        metadata={b"volfast.schema": b"snapshot/1"},
    )


SNAPSHOT_SCHEMA = snapshot_schema()


@dataclass
class SnapshotResult:
    """A snapshot and how it was made.

    Attributes
    ----------
    table : pyarrow.Table
        One row per instrument seen in the quote files, sorted by instrument_id, schema
        :data:`SNAPSHOT_SCHEMA`.
    date : datetime.date or None
        Trading date (in ``tz``) of the cut.
    cut_ns, window_start_ns : int
        UTC nanoseconds.
    counts : dict
        Records read, in window, before/after, out of order, instruments, missing definitions...
    warnings : list of str
        Data problems (each also emitted as an :class:`~volfast.io.IngestWarning`).
    inputs : list of dict
        Name, size, sha256, dataset, schema, DBN version of every file read.
    config : dict
        The resolved parameters.
    """

    table: Any
    date: _dt.date | None
    cut_ns: int
    window_start_ns: int
    counts: dict[str, Any]
    warnings: list[str]
    inputs: list[dict[str, Any]]
    config: dict[str, Any]
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def to_pandas(self) -> Any:
        return self.table.to_pandas()


# -- parameters ------------------------------------------------------------------------------------
_DUR = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|min|h)?\s*$")


def parse_duration(value: str | float | int | _dt.timedelta, *, name: str = "duration") -> float:
    """``"10m"``, ``"90s"``, ``"1h"``, ``"250ms"``, a number of seconds or a timedelta -> seconds (float)."""
    if isinstance(value, _dt.timedelta):
        sec = value.total_seconds()
    elif isinstance(value, (int, float)):
        sec = float(value)
    else:
        m = _DUR.match(str(value))
        if m is None:
            raise SnapshotSettingsError(f"{name}: cannot parse {value!r}; use e.g. 10m, 90s, 1h, 250ms")
        sec = float(m[1]) * {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[m[2]]
    if not np.isfinite(sec) or sec < 0:
        raise SnapshotSettingsError(f"{name} must be a non-negative duration, got {value!r}")
    return sec


def resolve_cut(
    cut: str | _dt.time | _dt.datetime | int, *, date: _dt.date | None, tz: str
) -> tuple[int, _dt.date | None]:
    """Cut time -> (UTC nanoseconds, trading date in ``tz``).

    ``cut`` is a time of day (``"15:48"``, ``"15:48:30"``, ``datetime.time``) on ``date`` in ``tz``, a
    datetime
    (naive ones are in ``tz``), an ISO datetime string, or an int of UTC nanoseconds.
    """
    zone = ZoneInfo(tz)
    if isinstance(cut, (int, np.integer)) and not isinstance(cut, bool):
        ns = int(cut)
        return ns, _dt.datetime.fromtimestamp(ns / _NS, tz=zone).date()
    if isinstance(cut, str) and ("T" in cut or "-" in cut):
        cut = _dt.datetime.fromisoformat(cut)
    if isinstance(cut, _dt.datetime):
        dt = cut if cut.tzinfo is not None else cut.replace(tzinfo=zone)
    else:
        if isinstance(cut, str):
            try:
                parts = [int(x) for x in cut.strip().split(":")]
                if len(parts) > 4:
                    raise ValueError(cut)
                hour, minute, second, micro = [*parts, 0, 0, 0][:4]
                t = _dt.time(hour, minute, second, micro)
            except (TypeError, ValueError):
                raise SnapshotSettingsError(
                    f"cut: cannot parse {cut!r}; use HH:MM[:SS] or an ISO datetime"
                ) from None
        elif isinstance(cut, _dt.time):
            t = cut
        else:  # a bool (an int subclass, refused as nanoseconds above) or another type
            raise TypeError(
                f"cut: expected HH:MM[:SS], a datetime.time, a datetime or int UTC ns, got {cut!r}"
            )
        if date is None:
            raise ValueError("cut is a time of day: give the date too")
        dt = _dt.datetime.combine(date, t, tzinfo=zone)
    utc = dt.astimezone(_dt.timezone.utc)
    ns = int((utc.replace(tzinfo=None) - _dt.datetime(1970, 1, 1)) // _dt.timedelta(microseconds=1)) * 1000
    return ns, dt.astimezone(zone).date()


def _fmt_ns(ns: int | None) -> str:
    if ns is None:
        return "n/a"
    return _dt.datetime.fromtimestamp(ns / _NS, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_paths(x: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    if x is None:
        return []
    if isinstance(x, (str, os.PathLike)):
        return [Path(x)]
    return [Path(p) for p in x]


def check_tz(tz: str) -> str:
    """``tz`` when it names an IANA time zone this machine knows, else :class:`SnapshotError` naming it."""
    from zoneinfo import ZoneInfoNotFoundError

    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise SnapshotSettingsError(
            f"unknown time zone {tz!r} (tz); use an IANA name such as America/New_York or UTC"
        ) from None
    return str(tz)


# -- main entry ------------------------------------------------------------------------------------
def take_snapshot(
    quotes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    definitions: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Definitions | None = None,
    data: str | os.PathLike[str] | None = None,
    date: str | _dt.date | None = None,
    cut: str | _dt.time | _dt.datetime | int = "15:48",
    tz: str = "America/New_York",
    lookback: str | float | _dt.timedelta = "10m",
    stale_after: str | float | _dt.timedelta = "60s",
    venues: str = "auto",
    dataset: str | None = None,
    chunk_records: int = 1 << 16,
    stop_at_cut: bool = True,
) -> SnapshotResult:
    """Last top of book per instrument as of ``cut``, from DBN files, in one bounded-memory pass.

    Parameters
    ----------
    quotes : path or sequence of paths, optional
        Top-of-book DBN files (``mbp-1``, ``cmbp-1``, ``cbbo-1s/1m``, ``bbo-1s/1m``, ``tbbo``, ``tcbbo``),
        read
        in this order. Omit to take them from ``data`` / ``date``.
    definitions : path(s) or Definitions, optional
        ``definition`` files or a loaded table. Options missing from them are described from the OCC / CME
        symbols in the quote files' symbology where possible; the rest are counted and reported.
    data, date : optional
        A batch-style day folder (``<dataset>-YYYYMMDD.<schema>.dbn.zst``) and the date to read from it.
    cut : str, datetime.time, datetime.datetime or int
        ``"15:48"`` (time of day in ``tz`` on ``date``), a datetime, or UTC nanoseconds.
    tz : str
        IANA time zone of a time-of-day cut (default America/New_York).
    lookback : str, float or timedelta
        Window length before the cut (``"10m"``; seconds when a number).
    stale_after : str, float or timedelta
        Quotes older than this at the cut are flagged ``stale`` (default 60 s).
    venues : {"auto", "consolidate", "single"}
        ``auto`` consolidates per-venue OPRA schemas (see module docstring) and keeps others as they are.
    dataset : str, optional
        Require this dataset (e.g. ``"GLBX.MDP3"``) in every file.
    chunk_records : int
        Records per chunk (memory is about ``chunk_records * 80`` bytes plus state per instrument).
    stop_at_cut : bool
        Stop reading a quote file after the first chunk that reaches past the cut, provided its records
        have been in ``ts_recv`` order so far (Databento's files are sorted by ``ts_recv``): what follows
        cannot be in the window. The counts then cover the records read (``stopped_at_cut`` names the
        files), and instruments whose first record comes after the cut have no row. False reads every
        record.

    Returns
    -------
    SnapshotResult

    Raises
    ------
    DBNReadError
        A file is unreadable, truncated, corrupt, or of the wrong schema or dataset (the message names it).
    SnapshotError
        No quote files, or inconsistent inputs.
    """
    from volfast._native import core

    if venues not in ("auto", "consolidate", "single"):
        raise SnapshotSettingsError(f"venues must be 'auto', 'consolidate' or 'single', got {venues!r}")
    check_tz(tz)
    lookback_s = parse_duration(lookback, name="lookback")
    stale_s = parse_duration(stale_after, name="stale_after")
    day = _as_date(date) if date is not None else None
    warn_list: list[str] = []

    def warn(msg: str) -> None:
        warn_list.append(msg)
        warnings.warn(msg, IngestWarning, stacklevel=3)

    quote_paths = _as_paths(quotes)
    def_paths: list[Path] = []
    if data is not None:
        if day is None:
            raise ValueError("data= needs date=")
        files = find_day_files(data, day)
        if not quote_paths:
            q = files.quotes()
            if q is None:
                raise SnapshotError(
                    f"{data}: no top-of-book file ({', '.join(QUOTE_SCHEMAS)}) for {day.isoformat()}; "
                    + files.explain()
                )
            quote_paths = q[1]
        if definitions is None:
            def_paths = files.definitions()
            if not def_paths:
                warn(
                    f"{data}: no definition file for {day.isoformat()}; "
                    "instruments are described from symbols "
                    "where possible"
                )
    if not quote_paths:
        raise SnapshotError("no quote files given (pass quotes= or data= and date=)")
    if isinstance(definitions, Definitions):
        defs = definitions
    else:
        def_paths = def_paths or _as_paths(definitions)
        defs = Definitions.empty()

    # Open and check every input before reading any records: a wrong file fails fast.
    qfiles = [DBNFile(p) for p in quote_paths]
    schema = None
    for f in qfiles:
        f.require(schemas=QUOTE_SCHEMAS, dataset=dataset)
        named = dataset_from_filename(f.path.name)
        if named is not None and named != f.dataset:
            raise DBNReadError(f.path, f"file name says dataset {named} but its metadata says {f.dataset}")
        if schema is None:
            schema, dataset = f.schema, f.dataset
        elif f.schema != schema or f.dataset != dataset:
            raise DBNReadError(
                f.path, f"{f.dataset} {f.schema} does not match the first quote file ({dataset} {schema})"
            )
    assert schema is not None and dataset is not None
    dfiles = [DBNFile(p) for p in def_paths]
    for f in dfiles:
        f.require(schemas=("definition",))
        if f.dataset != dataset:
            raise DBNReadError(f.path, f"definitions are for dataset {f.dataset}; quotes are {dataset}")

    if (
        day is None
        and not isinstance(cut, (int, np.integer, _dt.datetime))
        and not (isinstance(cut, str) and ("T" in cut or "-" in cut))
    ):
        # A time-of-day cut without a date: the file's start date (UTC), as batch files start at 00:00 UTC.
        day = _dt.datetime.fromtimestamp(qfiles[0].start_ns / _NS, tz=_dt.timezone.utc).date()
    cut_ns, trade_date = resolve_cut(cut, date=day, tz=tz)
    lookback_ns = round(lookback_s * _NS)

    by_venue = venues == "consolidate" or (
        venues == "auto" and dataset.startswith("OPRA") and schema not in CONSOLIDATED_SCHEMAS
    )
    reducer = core().snapshot.Reducer(cut_ns, lookback_ns, by_venue)
    per_file: list[dict[str, Any]] = []
    stopped: list[str] = []
    sanity = _Sanity()
    defs_pending = bool(dfiles)
    for f in qfiles:
        before = dict(reducer.counters)
        # closed explicitly: an early stop at the cut still verifies the checksum of the frame it is in
        chunks = f.iter_chunks(chunk_records)
        try:
            for arr in chunks:
                ts = arr["ts_recv"]
                ooo = reducer.counters["out_of_order"] if len(ts) else 0
                reducer.update(
                    ts,
                    arr["instrument_id"],
                    arr["bid_px_00"],
                    arr["ask_px_00"],
                    arr["bid_sz_00"],
                    arr["ask_sz_00"],
                    arr["publisher_id"],
                )
                if len(ts):
                    sanity.update(f, arr, ts, sorted_=reducer.counters["out_of_order"] == ooo)
                if defs_pending:  # read them while the reader's thread decompresses the next quote blocks
                    defs, defs_pending = load_definitions(dfiles)[0], False
                if stop_at_cut and len(ts) and int(ts[-1]) > cut_ns:
                    if reducer.counters["out_of_order"] == before["out_of_order"]:
                        stopped.append(f.path.name)
                        break  # sorted so far: nothing after this chunk can be in the window
        finally:
            chunks.close()
        after = reducer.counters
        per_file.append({k: after[k] - before[k] for k in ("records", "in_window")})
    if defs_pending:  # the quote files hold no records
        defs = load_definitions(dfiles)[0]

    c = reducer.counters
    names = ", ".join(str(f.path) for f in qfiles)
    if c["records"] == 0:
        warn(f"{names}: no quote records")
    elif cut_ns < c["min_ts"] or cut_ns - lookback_ns > c["max_ts"]:
        warn(
            f"{names}: cut {_fmt_ns(cut_ns)} is outside the session in the file "
            f"(quotes from {_fmt_ns(c['min_ts'])} to {_fmt_ns(c['max_ts'])}); no quote in the window"
            if c["in_window"] == 0
            else f"{names}: cut {_fmt_ns(cut_ns)} is outside the session in the file "
            f"(quotes from {_fmt_ns(c['min_ts'])} to {_fmt_ns(c['max_ts'])})"
        )
    elif c["in_window"] == 0:
        warn(
            f"{names}: empty window: no quote with ts_recv in "
            f"[{_fmt_ns(cut_ns - lookback_ns)}, {_fmt_ns(cut_ns)}]"
        )

    res = reducer.result()
    n_defs = len(defs)
    # Symbols in the quote files' mappings describe what the definition records do not cover. Parsing them
    # costs more than the whole reduction on a full day, so it is done only when an instrument is missing
    # (definition records win where both describe an instrument, so the table is the same either way).
    raw_by_id: dict[int, str] = {}
    if not defs.lookup(res["instrument_id"])[1].all():
        sym = Definitions.empty()
        for f in qfiles:
            md = f.metadata
            sym = sym.merge(definitions_from_symbology(md, date=None))
            raw_by_id.update(_raw_symbols(md))
        defs = sym.merge(defs) if len(sym) else defs
    table, n_missing, missing_ids = _build_table(res, defs, raw_by_id, cut_ns=cut_ns, stale_s=stale_s)
    if n_missing:
        head = ", ".join(str(i) for i in missing_ids[:10])
        more = "" if n_missing <= 10 else f" and {n_missing - 10} more"
        warn(
            f"{names}: {n_missing} of {table.num_rows} instruments have no definition "
            f"(instrument_id {head}{more})"
        )

    for msg in sanity.warnings():
        warn(msg)
    has = np.asarray(res["has_quote"], bool)
    counts = {
        "records": int(c["records"]),
        "records_in_window": int(c["in_window"]),
        "records_before_window": int(c["before_window"]),
        "records_after_cut": int(c["after_cut"]),
        "records_out_of_order": int(c["out_of_order"]),
        "instruments": int(table.num_rows),
        "instruments_quoted": int(has.sum()),
        "instruments_without_definition": int(n_missing),
        "definitions": n_defs,  # from definition records (symbol-derived ones are counted per row below)
        "instruments_from_symbols": int(
            np.isin(table.column("definition_source").to_numpy(zero_copy_only=False), _SYMBOL_SOURCES).sum()
        ),
        "first_ts_recv": _fmt_ns(c["min_ts"]),
        "last_ts_recv": _fmt_ns(c["max_ts"]),
        **sanity.counts(),
        "instruments_crossed": int(np.asarray(table.column("crossed")).sum()),
        "per_file": {f.path.name: pf for f, pf in zip(qfiles, per_file, strict=True)},
        "stopped_at_cut": stopped,
    }
    config = {
        "cut": cut if isinstance(cut, (str, int)) else str(cut),
        "cut_utc": _fmt_ns(cut_ns),
        "tz": tz,
        "lookback_s": lookback_s,
        "stale_after_s": stale_s,
        "venues": venues,
        "by_venue": bool(by_venue),
        "dataset": dataset,
        "schema": schema,
    }
    inputs = [dict(f.describe(), role="quotes") for f in qfiles] + [
        dict(f.describe(), role="definitions") for f in dfiles
    ]
    return SnapshotResult(
        table=table,
        date=trade_date,
        cut_ns=cut_ns,
        window_start_ns=max(cut_ns - lookback_ns, 0),
        counts=counts,
        warnings=warn_list,
        inputs=inputs,
        config=config,
    )


class _Sanity:
    """Record sanity checks, per chunk, with counts for the manifest: negative prices (the reader has
    already checked each frame's checksum, so these are in the file as written) and ``ts_recv`` outside the
    file's [start, end] range. (Crossed quotes are flagged per instrument in the table and counted from it.)
    Cheap checks first (two min reductions; the range from the chunk's first and last ``ts_recv`` when the
    reducer saw the chunk in order); the counting passes run only when a check says there is something."""

    def __init__(self) -> None:
        self.negative = 0
        self.outside = 0
        self.first: dict[str, str] = {}  # kind -> "file at byte N"

    def _where(self, kind: str, f: DBNFile, arr: np.ndarray, mask: np.ndarray) -> None:
        if kind not in self.first:
            i = int(np.flatnonzero(mask)[0])
            self.first[kind] = (
                f"{f.path.name} (ts_recv {int(arr['ts_recv'][i])}, "
                f"instrument_id {int(arr['instrument_id'][i])})"
            )

    def update(self, f: DBNFile, arr: np.ndarray, ts: np.ndarray, *, sorted_: bool) -> None:
        bid, ask = arr["bid_px_00"], arr["ask_px_00"]
        if bid.min() < 0 or ask.min() < 0:
            m = (bid < 0) | (ask < 0)
            self.negative += int(m.sum())
            self._where("negative", f, arr, m)
        lo, hi = f.start_ns, f.end_ns
        t0, t1 = (int(ts[0]), int(ts[-1])) if sorted_ else (int(ts.min()), int(ts.max()))
        if t0 < lo or (hi is not None and t1 > hi):  # interval schemas stamp the end itself
            m = (ts < lo) | (ts > hi) if hi is not None else ts < lo
            self.outside += int(m.sum())
            self._where("outside", f, arr, m)

    def counts(self) -> dict[str, int]:
        return {"records_negative_price": self.negative, "records_outside_file_range": self.outside}

    def warnings(self) -> list[str]:
        out = []
        if self.negative:
            out.append(
                f"{self.negative} records with a negative bid or ask, first in {self.first['negative']}"
            )
        if self.outside:
            out.append(
                f"{self.outside} records with ts_recv outside the file's time range, first in "
                f"{self.first['outside']}"
            )
        return out


#: The same function under the name its subpackage had before: ``volfast.snapshot`` is the subpackage,
#: ``volfast.take_snapshot`` (and ``volfast.snapshot.take_snapshot``) the function.
snapshot = take_snapshot


def _raw_symbols(metadata: Any) -> dict[int, str]:
    """instrument_id -> raw symbol from a header's mappings (any symbol, not only options)."""
    out: dict[int, str] = {}
    stype_in = str(getattr(metadata.stype_in, "value", metadata.stype_in) or "")
    for raw, intervals in dict(metadata.mappings).items():
        for iv in intervals:
            try:
                if stype_in == "instrument_id":
                    out[int(raw)] = str(iv["symbol"])
                else:
                    out[int(iv["symbol"])] = str(raw)
            except (TypeError, ValueError):
                continue
    return out


def _build_table(
    res: dict[str, np.ndarray], defs: Definitions, raw_by_id: dict[int, str], *, cut_ns: int, stale_s: float
) -> tuple[Any, int, np.ndarray]:
    import pyarrow as pa

    iid = res["instrument_id"]
    has = np.asarray(res["has_quote"], bool)
    bpx, apx = res["bid_px"], res["ask_px"]
    bdef = has & (bpx != _UNDEF_PRICE)
    adef = has & (apx != _UNDEF_PRICE)
    bid = np.where(bdef, bpx, 0) / 1e9  # division is correctly rounded: 3702.25 stays exact
    ask = np.where(adef, apx, 0) / 1e9
    bid[~bdef] = np.nan
    ask[~adef] = np.nan
    ts = res["ts_recv"].astype(np.int64)
    age = np.where(has, (cut_ns - ts) / 1e9, np.nan)
    both = bdef & adef
    crossed = both & (bpx > apx)  # compared in fixed point: no float rounding
    locked = both & (bpx == apx)
    one_sided = has & (bdef != adef)
    stale = has & (age > stale_s)

    idx, found = defs.lookup(iid)
    n = iid.size

    def pick(col: np.ndarray, fill: Any) -> np.ndarray:
        if len(defs) == 0:
            return np.full(n, fill, dtype=object if fill is None else None)
        v = col[idx]
        if v.dtype == object:
            v = v.copy()
            v[~found] = fill
        elif v.dtype.kind == "f":
            v = np.where(found, v, np.nan)
        return v

    raw = pick(defs.raw_symbol, None).astype(object)
    if raw_by_id:
        for i in np.flatnonzero(~found):
            raw[i] = raw_by_id.get(int(iid[i]))
    cls = pick(defs.instrument_class.astype(object), None).astype(object)
    is_call = np.array([True if c == "C" else False if c == "P" else None for c in cls], dtype=object)
    exp = defs.expiration[idx] if len(defs) else np.full(n, np.datetime64("NaT", "ns"))
    exp_i = exp.astype("datetime64[ns]").astype(np.int64)
    exp_mask = np.isnat(exp) | ~found
    source = pick(defs.source, "missing").astype(object)
    source[~found] = "missing"

    def empty_to_none(a: np.ndarray) -> list[Any]:
        return [None if (x is None or x == "") else x for x in a.tolist()]

    ts_type = pa.timestamp("ns", tz="UTC")
    cols = {
        "instrument_id": pa.array(iid, pa.uint32()),
        "raw_symbol": pa.array(empty_to_none(raw), pa.string()),
        "underlying": pa.array(empty_to_none(pick(defs.underlying, None).astype(object)), pa.string()),
        "asset": pa.array(empty_to_none(pick(defs.asset, None).astype(object)), pa.string()),
        "instrument_class": pa.array(empty_to_none(cls), pa.string()),
        "is_call": pa.array(is_call.tolist(), pa.bool_()),
        "strike": pa.array(pick(defs.strike, np.nan).astype(np.float64), pa.float64()),
        "expiration": pa.array(exp_i, ts_type, mask=exp_mask),
        "multiplier": pa.array(pick(defs.multiplier, np.nan).astype(np.float64), pa.float64()),
        "tick": pa.array(pick(defs.tick, np.nan).astype(np.float64), pa.float64()),
        "bid": pa.array(bid, pa.float64()),
        "ask": pa.array(ask, pa.float64()),
        "bid_size": pa.array(res["bid_sz"], pa.uint32()),
        "ask_size": pa.array(res["ask_sz"], pa.uint32()),
        "ts_recv": pa.array(ts, ts_type, mask=~has),
        "age_s": pa.array(age, pa.float64()),
        "n_venues": pa.array(res["n_venues"], pa.uint16()),
        "has_quote": pa.array(has, pa.bool_()),
        "crossed": pa.array(crossed, pa.bool_()),
        "locked": pa.array(locked, pa.bool_()),
        "one_sided": pa.array(one_sided, pa.bool_()),
        "stale": pa.array(stale, pa.bool_()),
        "definition_source": pa.array(source.tolist(), pa.string()),
    }
    table = pa.table(cols, schema=SNAPSHOT_SCHEMA)
    missing = iid[~found]
    return table, int(missing.size), missing
