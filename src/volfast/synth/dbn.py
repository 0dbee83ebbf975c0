"""Writing DBN version 3 files: metadata from ``databento_dbn``, record bodies as numpy structured arrays.

Large record sets (MBP-1, BBO, OHLCV) are built as numpy arrays whose dtypes reproduce the DBN v3 C
layouts byte for byte (tests compare them with ``bytes(databento_dbn.MBP1Msg(...))``), then written with
``tobytes()``; definitions, a few thousand at most, go through ``databento_dbn.InstrumentDefMsg``.
Files are ``Metadata.encode() + records``, zstd-compressed (single-threaded, so output is byte-stable),
written under a temporary name and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import databento_dbn as dbn
import numpy as np
import zstandard

from volfast.io.dbn import write_sha256_sidecar
from volfast.io.output import atomic_write_bytes

DATASET = "GLBX.MDP3"
PUBLISHER_GLBX = 1  # GLBX.MDP3.GLBX
UNDEF_PRICE = int(dbn.UNDEF_PRICE)  # i64 max: an empty side / no price
PRICE_SCALE = 1_000_000_000  # fixed-point 1e-9

# databento_dbn's .pyi declares enum members as ``PARENT: str``, which type checkers read as plain ``str``
# attributes rather than members; ``from_str`` is typed and returns the very same member objects.
STYPE_PARENT = dbn.SType.from_str("parent")
STYPE_INSTRUMENT_ID = dbn.SType.from_str("instrument_id")
CLASS_FUTURE = dbn.InstrumentClass.from_str("F")
CLASS_CALL = dbn.InstrumentClass.from_str("C")
CLASS_PUT = dbn.InstrumentClass.from_str("P")
UPDATE_ADD = dbn.SecurityUpdateAction.from_str("A")
USER_DEFINED_NO = dbn.UserDefinedInstrument.from_str("N")

RTYPE_MBP1 = 1
RTYPE_OHLCV_1M = 33
RTYPE_BBO_1M = 196

MBP1_DTYPE = np.dtype(
    [
        ("length", "u1"),
        ("rtype", "u1"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("ts_event", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("action", "S1"),
        ("side", "S1"),
        ("flags", "u1"),
        ("depth", "u1"),
        ("ts_recv", "<u8"),
        ("ts_in_delta", "<i4"),
        ("sequence", "<u4"),
        ("bid_px_00", "<i8"),
        ("ask_px_00", "<i8"),
        ("bid_sz_00", "<u4"),
        ("ask_sz_00", "<u4"),
        ("bid_ct_00", "<u4"),
        ("ask_ct_00", "<u4"),
    ]
)
BBO_DTYPE = np.dtype(
    [
        ("length", "u1"),
        ("rtype", "u1"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("ts_event", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("_reserved1", "u1"),
        ("side", "S1"),
        ("flags", "u1"),
        ("_reserved2", "u1"),
        ("ts_recv", "<u8"),
        ("_reserved3", "S4"),
        ("sequence", "<u4"),
        ("bid_px_00", "<i8"),
        ("ask_px_00", "<i8"),
        ("bid_sz_00", "<u4"),
        ("ask_sz_00", "<u4"),
        ("bid_ct_00", "<u4"),
        ("ask_ct_00", "<u4"),
    ]
)
OHLCV_DTYPE = np.dtype(
    [
        ("length", "u1"),
        ("rtype", "u1"),
        ("publisher_id", "<u2"),
        ("instrument_id", "<u4"),
        ("ts_event", "<u8"),
        ("open", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("volume", "<u8"),
    ]
)
assert MBP1_DTYPE.itemsize == 80 and BBO_DTYPE.itemsize == 80 and OHLCV_DTYPE.itemsize == 56


def to_fixed(price: np.ndarray) -> np.ndarray:
    """Index points to int64 fixed-point 1e-9 (exact for prices on a 0.05 grid); NaN -> UNDEF_PRICE."""
    price = np.asarray(price, dtype=np.float64)
    out = np.full(price.shape, UNDEF_PRICE, dtype=np.int64)
    ok = np.isfinite(price)
    # round on the 1e-4 grid first so 0.05-multiples map to exact integers
    out[ok] = np.round(price[ok] * 10_000).astype(np.int64) * (PRICE_SCALE // 10_000)
    return out


def new_records(dtype: np.dtype, n: int, rtype: int) -> np.ndarray:
    """Zeroed record array with the header (length in 4-byte words, rtype, publisher) filled in."""
    rec = np.zeros(n, dtype=dtype)
    rec["length"] = dtype.itemsize // 4
    rec["rtype"] = rtype
    rec["publisher_id"] = PUBLISHER_GLBX
    return rec


def metadata(
    *,
    schema: Any,
    start_ns: int,
    end_ns: int,
    day: dt.date,
    parents: Sequence[str],
    symbols_to_ids: Iterable[tuple[str, int]],
    dataset: str = DATASET,
) -> bytes:
    """Encoded DBN v3 metadata as a batch download by parent symbol would carry it (stype_in=parent,
    one mapping interval per raw symbol covering the UTC dates the session touches, since symbology
    intervals are UTC dates and the Globex session starts the previous UTC evening)."""
    del day  # the interval follows the session's UTC span
    utc = dt.timezone.utc
    first = dt.datetime.fromtimestamp(start_ns / 1e9, tz=utc).date()
    nxt = dt.datetime.fromtimestamp(end_ns / 1e9, tz=utc).date() + dt.timedelta(days=1)
    mappings = [
        SimpleNamespace(
            raw_symbol=sym, intervals=[SimpleNamespace(start_date=first, end_date=nxt, symbol=str(int(iid)))]
        )
        for sym, iid in symbols_to_ids
    ]
    md = dbn.Metadata(
        dataset=dataset,
        start=int(start_ns),
        end=int(end_ns),
        stype_in=STYPE_PARENT,
        stype_out=STYPE_INSTRUMENT_ID,
        schema=schema,
        symbols=list(parents),
        mappings=mappings,
        version=3,
    )
    return bytes(md.encode())


#: Decompressed bytes per zstd frame. Each frame carries a content checksum, so a reader that stops early
#: (the snapshot at its cut) verifies what it read by finishing just the frame it is in.
FRAME_BYTES = 4 << 20


def write_dbn_zst(
    path: str | os.PathLike[str], header: bytes, body: bytes | memoryview | Sequence[bytes], level: int
) -> int:
    """Compress ``header + body`` with zstd, in frames of :data:`FRAME_BYTES` each with a content checksum,
    and write it atomically with its sha256 sidecar. Returns the compressed size."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True)
    chunks = [header] + ([body] if isinstance(body, (bytes, bytearray, memoryview)) else list(body))
    raw = memoryview(b"".join(chunks))
    blob = b"".join(cctx.compress(raw[i : i + FRAME_BYTES]) for i in range(0, max(len(raw), 1), FRAME_BYTES))
    atomic_write_bytes(path, blob)
    write_sha256_sidecar(path, hashlib.sha256(blob).hexdigest())  # builds need not hash it again
    return len(blob)
