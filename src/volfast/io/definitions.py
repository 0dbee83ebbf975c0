"""Instrument definitions: a compact table keyed by ``instrument_id``.

Sources, best first:

1. ``definition`` records (any DBN version); the last record per instrument in file order wins (updates).
2. OCC option symbols (``"QQQ   250428C00472000"``) from a file's symbology mappings, for OPRA files that come
   without definition records: root, expiry date, call/put and strike are all in the symbol.
3. CME option symbols (``"ESM4 P5230"``, ``"EW2F6 C7000"``): call/put and strike only (the expiry date of a
   CME option is not in its symbol).

Fixed-point fields (1e-9) are converted to float; ``UNDEF_PRICE`` and the other ``UNDEF`` sentinels become NaN
(floats), NaT (times) or empty strings.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from volfast.io.dbn import DBNFile

__all__ = [
    "CMESymbol",
    "Definitions",
    "OCCSymbol",
    "definitions_from_symbology",
    "load_definitions",
    "parse_cme_option_symbol",
    "parse_occ_symbol",
]

_UNDEF_I64 = np.iinfo(np.int64).max
_UNDEF_U64 = np.iinfo(np.uint64).max
_UNDEF_I32 = np.iinfo(np.int32).max
#: Shares per listed US equity/ETF option contract; OPRA definitions leave unit_of_measure_qty undefined.
OPRA_DEFAULT_MULTIPLIER = 100.0

_COLUMNS = (
    "instrument_id",
    "raw_symbol",
    "instrument_class",
    "strike",
    "expiration",
    "underlying",
    "asset",
    "tick",
    "multiplier",
    "dataset",
    "source",
)


@dataclass
class Definitions:
    """Instrument metadata, one row per ``instrument_id`` (sorted ascending).

    Attributes
    ----------
    instrument_id : ndarray of uint32
    raw_symbol, underlying, asset, dataset : ndarray of object (str)
    instrument_class : ndarray of '<U1'
        ``C`` call, ``P`` put, ``F`` future, ``K`` stock, ``S`` spread... as Databento defines them.
    strike : ndarray of float64
        Strike in price units (index points for ES, dollars for OPRA); NaN when not an option.
    expiration : ndarray of datetime64[ns]
        UTC; NaT when unknown (e.g. a CME option known only from its symbol).
    tick : ndarray of float64
        Minimum price increment; NaN when variable or undefined.
    multiplier : ndarray of float64
        Contract multiplier (``unit_of_measure_qty``, else ``contract_multiplier``; 100 for OPRA options).
    source : ndarray of object
        ``"definition"``, ``"occ_symbol"`` or ``"cme_symbol"``.
    """

    instrument_id: np.ndarray
    raw_symbol: np.ndarray
    instrument_class: np.ndarray
    strike: np.ndarray
    expiration: np.ndarray
    underlying: np.ndarray
    asset: np.ndarray
    tick: np.ndarray
    multiplier: np.ndarray
    dataset: np.ndarray
    source: np.ndarray

    @classmethod
    def empty(cls) -> Definitions:
        return cls(
            instrument_id=np.empty(0, np.uint32),
            raw_symbol=np.empty(0, object),
            instrument_class=np.empty(0, "<U1"),
            strike=np.empty(0, np.float64),
            expiration=np.empty(0, "datetime64[ns]"),
            underlying=np.empty(0, object),
            asset=np.empty(0, object),
            tick=np.empty(0, np.float64),
            multiplier=np.empty(0, np.float64),
            dataset=np.empty(0, object),
            source=np.empty(0, object),
        )

    def __len__(self) -> int:
        return int(self.instrument_id.size)

    def _take(self, idx: np.ndarray) -> Definitions:
        return Definitions(**{c: getattr(self, c)[idx] for c in _COLUMNS})

    def _sorted_unique(self) -> Definitions:
        # Keep the last row per instrument_id (later sources / later records override earlier ones).
        ids = self.instrument_id
        rev = ids[::-1]
        _, first_in_rev = np.unique(rev, return_index=True)
        last = ids.size - 1 - first_in_rev
        return self._take(last)  # np.unique sorts, so rows come out by instrument_id

    def merge(self, other: Definitions) -> Definitions:
        """Union; where both have an instrument, ``other`` wins (pass the better source as ``other``)."""
        cat = Definitions(**{c: np.concatenate([getattr(self, c), getattr(other, c)]) for c in _COLUMNS})
        return cat._sorted_unique()

    def lookup(self, instrument_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each id and a found mask (index is 0 where not found)."""
        ids = np.asarray(instrument_id, dtype=np.uint32)
        if len(self) == 0:
            return np.zeros(ids.size, np.int64), np.zeros(ids.size, bool)
        pos = np.searchsorted(self.instrument_id, ids)
        pos = np.minimum(pos, len(self) - 1)
        found = self.instrument_id[pos] == ids
        return np.where(found, pos, 0), found

    def to_dict(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in _COLUMNS}


def _decode(a: np.ndarray) -> np.ndarray:
    """Fixed-width bytes -> object array of str (NUL padding stripped)."""
    try:  # symbols are ASCII in practice: numpy decodes them in one pass
        return a.astype("U").astype(object)
    except UnicodeDecodeError:
        return np.array([x.decode("utf-8", "replace") for x in a.tolist()], dtype=object)


def _fixed(a: np.ndarray) -> np.ndarray:
    v = a.astype(np.int64)
    out = v / 1e9  # division (not * 1e-9) is correctly rounded: 3702.25 stays exact
    out[v == _UNDEF_I64] = np.nan
    return out


_NS_PER_DAY = 86_400 * 10**9


def equity_option_close(
    expiration: np.ndarray, *, close: str = "16:00", tz: str = "America/New_York"
) -> np.ndarray:
    """Date-only expirations (exactly midnight UTC, as OPRA definitions and OCC symbols give them) moved to
    that date's close in ``tz``: US equity and ETF options stop trading at 16:00 New York, and year
    fractions count to then. Other times and NaT are returned unchanged.
    """
    from zoneinfo import ZoneInfo

    exp = np.asarray(expiration, dtype="datetime64[ns]")
    ns = exp.astype(np.int64)
    date_only = ~np.isnat(exp) & (ns % _NS_PER_DAY == 0)
    if not date_only.any():
        return exp
    out = ns.copy()
    hh, mm = (int(x) for x in close.split(":"))
    zone = ZoneInfo(tz)
    for day in np.unique(ns[date_only] // _NS_PER_DAY):
        d = _dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))
        moment = _dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=zone)
        out[date_only & (ns // _NS_PER_DAY == day)] = int(moment.timestamp()) * 10**9
    return out.astype("datetime64[ns]")


def _from_records(arrs: list[np.ndarray], dataset: str) -> Definitions:
    if not arrs:
        return Definitions.empty()
    # Keep only the compact columns of each chunk (definition records are 360-520 bytes each).
    ids = np.concatenate([a["instrument_id"] for a in arrs]).astype(np.uint32)
    rev = ids[::-1]
    _, first_in_rev = np.unique(rev, return_index=True)
    last = ids.size - 1 - first_in_rev

    def col(name: str) -> np.ndarray:
        return np.concatenate([a[name] for a in arrs])[last]

    strike = _fixed(col("strike_price"))
    exp_raw = col("expiration").astype(np.uint64)
    expiration = exp_raw.astype("int64").astype("datetime64[ns]")
    expiration[exp_raw == _UNDEF_U64] = np.datetime64("NaT")
    uom = _fixed(col("unit_of_measure_qty"))
    cm = col("contract_multiplier").astype(np.float64)
    cm[cm == _UNDEF_I32] = np.nan
    multiplier = np.where(np.isfinite(uom) & (uom > 0), uom, cm)
    cls_raw = col("instrument_class")
    try:
        cls = cls_raw.astype("S1").astype("<U1")
    except UnicodeDecodeError:
        cls = np.array([c.decode("ascii", "replace") for c in cls_raw.astype("S1").tolist()], dtype="<U1")
    cls[cls == ""] = " "
    if dataset.startswith("OPRA"):
        multiplier = np.where(
            np.isnan(multiplier) & np.isin(cls, ["C", "P"]), OPRA_DEFAULT_MULTIPLIER, multiplier
        )
        expiration = equity_option_close(expiration)
    n = last.size
    return Definitions(
        instrument_id=ids[last],
        raw_symbol=_decode(col("raw_symbol")),
        instrument_class=cls,
        strike=strike,
        expiration=expiration,
        underlying=_decode(col("underlying")),
        asset=_decode(col("asset")),
        tick=_fixed(col("min_price_increment")),
        multiplier=multiplier,
        dataset=np.full(n, dataset, dtype=object),
        source=np.full(n, "definition", dtype=object),
    )


def load_definitions(
    paths: str | os.PathLike[str] | DBNFile | Sequence[str | os.PathLike[str] | DBNFile],
    *,
    chunk_records: int = 1 << 15,
) -> tuple[Definitions, list[DBNFile]]:
    """Read ``definition`` files into a :class:`Definitions` table.

    Parameters
    ----------
    paths : path, DBNFile or a sequence of them
        ``definition``-schema DBN files (any version), as paths or already opened. Later files override
        earlier ones per instrument.
    chunk_records : int
        Records per chunk while streaming.

    Returns
    -------
    (Definitions, list of DBNFile)
        The table and the opened files (for manifests).

    Raises
    ------
    DBNReadError
        If a file is unreadable or not of schema ``definition``.
    """
    if isinstance(paths, (str, os.PathLike, DBNFile)):
        paths = [paths]
    table = Definitions.empty()
    files = []
    for p in paths:
        f = p if isinstance(p, DBNFile) else DBNFile(p)
        f.require(schemas=("definition",))
        arrs = list(f.iter_chunks(chunk_records))
        table = table.merge(_from_records(arrs, f.dataset))
        files.append(f)
    return table, files


# -- symbols ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OCCSymbol:
    """A parsed OCC option symbol: root, expiry date, call/put, strike (dollars)."""

    root: str
    expiry: _dt.date
    is_call: bool
    strike: float


# Root left-justified in 6 characters, then YYMMDD, C/P, strike x 1000 in 8 digits. Also accept the root
# without padding ("SPY240119P00340000"), as some vendors print it.
_OCC = re.compile(r"^(?P<root>[A-Z0-9./]{1,6}?) *(?P<date>\d{6})(?P<cp>[CP])(?P<strike>\d{8})$")
_CME_OPT = re.compile(
    r"^(?P<root>[A-Z0-9]{1,5}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})"
    r" +(?P<cp>[CP])(?P<strike>\d+(?:\.\d+)?)$"
)


def parse_occ_symbol(symbol: str) -> OCCSymbol | None:
    """Parse ``"QQQ   250428C00472000"`` -> root QQQ, 2025-04-28, call, 472.0; None if not an OCC symbol."""
    m = _OCC.match(symbol.strip() if len(symbol) > 21 else symbol)
    if m is None:
        return None
    try:
        expiry = _dt.datetime.strptime(m["date"], "%y%m%d").date()
    except ValueError:
        return None
    return OCCSymbol(m["root"], expiry, m["cp"] == "C", int(m["strike"]) / 1000.0)


class CMESymbol(NamedTuple):
    """A parsed CME Globex option symbol."""

    root: str  # product root, e.g. "ES", "EW2"
    contract: str  # root + month code + year digit(s), e.g. "ESM4"
    is_call: bool
    strike: float  # in the symbol's units (index points for ES)


def parse_cme_option_symbol(symbol: str) -> CMESymbol | None:
    """Parse a CME Globex option symbol: ``"ESM4 P5230"`` -> root ES, contract ESM4, put, 5230.0.

    Returns None when the symbol is not of that form. The expiry date is not in a CME option symbol; join a
    definition file for it.
    """
    m = _CME_OPT.match(symbol.strip())
    if m is None:
        return None
    return CMESymbol(m["root"], f"{m['root']}{m['month']}{m['year']}", m["cp"] == "C", float(m["strike"]))


def _mapped_ids(metadata: Any, date: _dt.date | None) -> Iterable[tuple[str, int]]:
    """(raw symbol, instrument_id) pairs from a metadata header's symbology mappings."""
    stype_in = str(getattr(metadata.stype_in, "value", metadata.stype_in) or "")
    for raw, intervals in dict(metadata.mappings).items():
        for iv in intervals:
            if date is not None and not (iv["start_date"] <= date < iv["end_date"]):
                continue
            try:
                iid = int(iv["symbol"])
            except (TypeError, ValueError):
                continue
            # With stype_in = instrument_id the key is the id and the value the symbol; swap.
            yield (str(iv["symbol"]), int(raw)) if stype_in == "instrument_id" else (str(raw), iid)


def definitions_from_symbology(metadata: Any, *, date: _dt.date | None = None) -> Definitions:
    """Build definitions from OCC or CME option symbols in a DBN header's symbology mappings.

    Parameters
    ----------
    metadata : databento_dbn.Metadata
        A header whose ``mappings`` map raw symbols to instrument ids.
    date : datetime.date, optional
        Use only mapping intervals covering this date (ids are reassigned daily on OPRA).

    Returns
    -------
    Definitions
        Options whose symbols parse (source ``occ_symbol`` or ``cme_symbol``); other symbols are skipped.
        OCC expiries are set to midnight UTC of the expiry date, as OPRA definition records do.
    """
    dataset = str(metadata.dataset)
    rows: list[tuple[int, str, str, float, Any, str, float]] = []
    sources: list[str] = []
    assets: list[str] = []
    for raw, iid in _mapped_ids(metadata, date):
        occ = parse_occ_symbol(raw)
        if occ is not None:
            exp = equity_option_close(np.array([occ.expiry.isoformat()], "datetime64[ns]"))[0]
            rows.append(
                (iid, raw, "C" if occ.is_call else "P", occ.strike, exp, occ.root, OPRA_DEFAULT_MULTIPLIER)
            )
            sources.append("occ_symbol")
            assets.append(occ.root)
            continue
        cme = parse_cme_option_symbol(raw)
        if cme is not None:
            rows.append(
                (
                    iid,
                    raw,
                    "C" if cme.is_call else "P",
                    cme.strike,
                    np.datetime64("NaT", "ns"),
                    cme.contract,
                    np.nan,
                )
            )
            sources.append("cme_symbol")
            assets.append(cme.root)
    if not rows:
        return Definitions.empty()
    ids, raws, cls, strike, expirations, und, mult = zip(*rows, strict=True)
    n = len(rows)
    d = Definitions(
        instrument_id=np.array(ids, np.uint32),
        raw_symbol=np.array(raws, object),
        instrument_class=np.array(cls, "<U1"),
        strike=np.array(strike, np.float64),
        expiration=np.array(expirations, "datetime64[ns]"),
        underlying=np.array(und, object),
        asset=np.array(assets, object),
        tick=np.full(n, np.nan),
        multiplier=np.array(mult, np.float64),
        dataset=np.full(n, dataset, object),
        source=np.array(sources, object),
    )
    return d._sorted_unique()
