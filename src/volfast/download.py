"""``volfast download``: Databento historical data into day files that ``volfast build`` reads.

One request per (trading day, schema), ``timeseries.get_range(..., path=...)`` over the UTC day
``[D 00:00, D+1 00:00)`` (the span of Databento's ``split_duration="day"`` batch files), written as
``<dataset>-YYYYMMDD.<schema>.dbn.zst`` (``glbx-mdp3-20240102.mbp-1.dbn.zst``), the layout
:func:`volfast.io.dbn.find_day_files` reads. The cost is estimated first with ``metadata.get_cost`` (one call
per schema over the whole range) and must be confirmed.

Resuming: each file is streamed to a hidden temporary name in the output folder, read through completely
(every zstd frame and record checked, dataset and schema matched), and only then renamed to its final
name. A final name therefore always holds a complete file, and a re-run skips those and re-requests the
rest; a half-downloaded file (interrupt, dropped connection) is discarded and requested again from its start,
because ``get_range`` has no byte-range resume. Transient failures are retried with a back-off; a file that
still fails is reported and the other files go on.

The API key comes from ``DATABENTO_API_KEY`` (or ``key=``) and is never logged, printed or written: error
messages are scrubbed of it before they are reported.

Snapshot windows: a snapshot only reads top of book in the look-back window before the cut, so with a
:class:`SnapshotWindow` (the CLI's default) top-of-book schemas (``mbp-1``, ``tbbo``, ``bbo-*``, ``cbbo-*``,
``cmbp-1``, ``tcbbo``) are requested per trading day over ``[cut - lookback, cut + 1 s)`` only, while
definitions and every other schema keep the whole UTC day. For a SPY chain that is ten minutes of a
6.5-hour session, about 1/40 of the top-of-book bytes and cost. :func:`plan_requests` lists the requests
(``volfast download --dry-run`` prints them as JSON lines without touching the network).

OPRA uses parent symbology: ``SPY.OPT`` is every SPY option (the CLI's default symbols for OPRA datasets).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from volfast.errors import VolfastError

__all__ = [
    "TOP_OF_BOOK_SCHEMAS",
    "DownloadError",
    "DownloadReport",
    "DownloadRequest",
    "PlannedRequest",
    "SnapshotWindow",
    "default_schemas",
    "default_symbols",
    "plan_requests",
    "day_file_name",
    "download",
    "estimate_cost",
    "make_client",
]

KEY_ENV = "DATABENTO_API_KEY"
#: Schemas whose snapshot needs only the look-back window before the cut.
TOP_OF_BOOK_SCHEMAS = frozenset(
    {"mbp-1", "tbbo", "bbo-1s", "bbo-1m", "cbbo-1s", "cbbo-1m", "cmbp-1", "tcbbo"}
)


class DownloadError(VolfastError, RuntimeError):
    """A download that cannot start (no key, bad request)."""


class HistoricalClient(Protocol):
    """The part of ``databento.Historical`` used here (a fake with the same shape is used in tests)."""

    metadata: Any
    timeseries: Any


@dataclass(frozen=True)
class DownloadRequest:
    """What to download.

    Parameters
    ----------
    dataset : str
        ``"GLBX.MDP3"``, ``"OPRA.PILLAR"``...
    symbols : tuple of str
        With ``stype_in="parent"``: ``("ES.OPT", "ES.FUT")`` (all options / futures on ES).
    schemas : tuple of str
        ``("definition", "mbp-1", "ohlcv-1m")``.
    start, end : datetime.date
        First and last trading day, inclusive.
    stype_in : str
        Databento input symbology (``"parent"``, ``"raw_symbol"``, ...).
    """

    dataset: str
    symbols: tuple[str, ...]
    schemas: tuple[str, ...]
    start: _dt.date
    end: _dt.date
    stype_in: str = "parent"

    def __post_init__(self) -> None:
        if not self.dataset or "." not in self.dataset:
            raise DownloadError(f"dataset must look like GLBX.MDP3, got {self.dataset!r}")
        if not self.symbols:
            raise DownloadError("no symbols given (e.g. ES.OPT ES.FUT with stype_in=parent)")
        if not self.schemas:
            raise DownloadError("no schemas given (e.g. definition mbp-1 ohlcv-1m)")
        if self.start > self.end:
            raise DownloadError(f"start {self.start} is after end {self.end}")
        if self.stype_in == "parent" and self.dataset.upper().startswith("OPRA."):
            bad = [x for x in self.symbols if not x.upper().endswith(".OPT")]
            if bad:
                raise DownloadError(
                    f"OPRA parent symbols name an underlying's options, like SPY.OPT; got {', '.join(bad)}"
                )

    def days(self) -> list[_dt.date]:
        """Trading days (CME calendar: weekdays that are not exchange holidays) from start to end."""
        from volfast.synth.calendar import is_trading_day

        out, d = [], self.start
        while d <= self.end:
            if is_trading_day(d):
                out.append(d)
            d += _dt.timedelta(days=1)
        return out


def day_file_name(dataset: str, day: _dt.date, schema: str) -> str:
    """``("GLBX.MDP3", 2024-01-02, "mbp-1")`` -> ``"glbx-mdp3-20240102.mbp-1.dbn.zst"``."""
    return f"{dataset.lower().replace('.', '-')}-{day:%Y%m%d}.{schema}.dbn.zst"


def _utc_day(day: _dt.date) -> tuple[str, str]:
    a = _dt.datetime.combine(day, _dt.time(0), tzinfo=_dt.timezone.utc)
    return a.isoformat(), (a + _dt.timedelta(days=1)).isoformat()


def default_symbols(dataset: str) -> tuple[str, ...]:
    """Parent symbols when none are given: ``SPY.OPT`` on OPRA, ``ES.OPT ES.FUT`` elsewhere."""
    return ("SPY.OPT",) if dataset.upper().startswith("OPRA.") else ("ES.OPT", "ES.FUT")


def default_schemas(dataset: str) -> tuple[str, ...]:
    """Schemas when none are given: definitions and consolidated 1-minute top of book on OPRA; definitions,
    ``mbp-1`` and futures bars elsewhere."""
    if dataset.upper().startswith("OPRA."):
        return ("definition", "cbbo-1m")
    return ("definition", "mbp-1", "ohlcv-1m")


@dataclass(frozen=True)
class SnapshotWindow:
    """The part of a trading day a snapshot reads: ``lookback`` before ``cut`` (time of day in ``tz``)."""

    cut: str = "15:48"
    tz: str = "America/New_York"
    lookback: str = "10m"

    def bounds(self, day: _dt.date) -> tuple[str, str]:
        """``[cut - lookback, cut + 1 s)`` of ``day`` as UTC ISO strings (the snapshot's window is closed at
        the cut; Databento's ``end`` is exclusive)."""
        from volfast.snapshot.core import parse_duration, resolve_cut

        try:
            cut_ns, _ = resolve_cut(self.cut, date=day, tz=self.tz)
            back = parse_duration(self.lookback, name="lookback")
        except (ValueError, KeyError) as exc:
            raise DownloadError(f"snapshot window: {exc}") from None
        utc = _dt.timezone.utc
        cut = _dt.datetime.fromtimestamp(cut_ns // 1_000_000_000, tz=utc)
        a = cut - _dt.timedelta(seconds=back)
        return a.isoformat(), (cut + _dt.timedelta(seconds=1)).isoformat()


@dataclass(frozen=True)
class PlannedRequest:
    """One ``timeseries.get_range`` call: what it asks for and where it lands."""

    day: _dt.date
    dataset: str
    schema: str
    symbols: tuple[str, ...]
    stype_in: str
    start: str  # UTC ISO
    end: str  # UTC ISO, exclusive

    def to_json(self) -> dict[str, Any]:
        """``{dataset, schema, symbols, stype_in, start, end}`` (what ``--dry-run`` prints)."""
        return {
            "dataset": self.dataset,
            "schema": self.schema,
            "symbols": list(self.symbols),
            "stype_in": self.stype_in,
            "start": self.start,
            "end": self.end,
        }


def plan_requests(req: DownloadRequest, window: SnapshotWindow | None = None) -> list[PlannedRequest]:
    """Every request of ``req``, per trading day and schema: the UTC day, or with ``window`` only the snapshot
    window for top-of-book schemas (definitions and other schemas keep the day)."""
    out = []
    for day in req.days():
        day_span = _utc_day(day)
        win = window.bounds(day) if window is not None else day_span
        for schema in req.schemas:
            a, b = win if schema in TOP_OF_BOOK_SCHEMAS else day_span
            out.append(PlannedRequest(day, req.dataset, schema, req.symbols, req.stype_in, a, b))
    return out


def make_client(key: str | None = None) -> Any:
    """A ``databento.Historical`` client with the key from ``key`` or ``DATABENTO_API_KEY``.

    Raises
    ------
    DownloadError
        No key is set (the message says where to put it; the key itself is never shown).
    """
    key = key if key is not None else os.environ.get(KEY_ENV)
    if not key or key.isspace():
        raise DownloadError(f"no Databento API key: set {KEY_ENV} in the environment")
    import databento

    return databento.Historical(key=key)


def _scrub(msg: str, key: str | None) -> str:
    return msg.replace(key, "<redacted>") if key else msg


def estimate_cost(
    client: HistoricalClient, req: DownloadRequest, window: SnapshotWindow | None = None
) -> dict[str, float]:
    """US dollars per schema for the whole request, from ``client.metadata.get_cost``: one call per schema
    over ``[start 00:00 UTC, end + 1 day 00:00 UTC)`` for whole days, one per (day, schema) for windowed
    requests (each window is priced as it will be asked for)."""
    a, _ = _utc_day(req.start)
    _, b = _utc_day(req.end)

    def cost(s: str, lo: object, hi: object) -> float:
        try:
            return float(
                client.metadata.get_cost(
                    dataset=req.dataset, start=lo, end=hi, symbols=list(req.symbols), schema=s,
                    stype_in=req.stype_in,
                )
            )  # fmt: skip
        except Exception as exc:  # no network, HTTP errors, a refused key: one line, not a traceback
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            what = f"{req.dataset} {s}"
            raise DownloadError(
                f"cannot reach Databento for the cost estimate of {what} ({type(exc).__name__}: {msg})"
            ) from exc

    plans = plan_requests(req, window) if window is not None else []
    windowed = [p for p in plans if p.schema in TOP_OF_BOOK_SCHEMAS]
    costs: dict[str, float] = {}
    for s in req.schemas:
        spans = [(p.start, p.end) for p in windowed if p.schema == s] or [(a, b)]
        costs[s] = sum(cost(s, lo, hi) for lo, hi in spans)
    return costs


@dataclass
class FileResult:
    """One day file; ``status``: ``downloaded``, ``present`` (complete from an earlier run) or ``failed``."""

    day: _dt.date
    schema: str
    path: Path
    status: str
    attempts: int = 0
    size: int = 0
    records: int = 0
    error: str | None = None


@dataclass
class DownloadReport:
    """Every file of a download and what happened to it."""

    files: list[FileResult] = field(default_factory=list)

    def by_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def failed(self) -> list[FileResult]:
        return self.by_status("failed")


def _verify(path: Path, dataset: str, schema: str) -> tuple[int, str | None]:
    """Read the file through (every frame and record); return its record count and sha256, or raise
    DBNReadError."""
    from volfast.io.dbn import DBNFile

    f = DBNFile(path)
    f.require(schemas=(schema,), dataset=dataset)
    n = sum(len(a) for a in f.iter_chunks(1 << 16))
    return n, f.sha256


def _present(path: Path, dataset: str, schema: str) -> bool:
    """A final-named file from an earlier run: complete by construction; check its header still says what
    we asked for (a user may have dropped another file there)."""
    from volfast.io.dbn import DBNFile, DBNReadError

    if not path.is_file():
        return False
    try:
        DBNFile(path).require(schemas=(schema,), dataset=dataset)
    except DBNReadError:
        return False
    return True


def download(
    client: HistoricalClient,
    req: DownloadRequest,
    out: str | os.PathLike[str],
    *,
    attempts: int = 3,
    backoff_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    on_file: Callable[[FileResult], None] | None = None,
    key: str | None = None,
    window: SnapshotWindow | None = None,
) -> DownloadReport:
    """Download every (trading day, schema) file of ``req`` into ``out``, skipping complete ones.

    Parameters
    ----------
    client
        ``databento.Historical`` (see :func:`make_client`) or an object with the same
        ``timeseries.get_range`` / ``metadata.get_cost`` methods.
    attempts : int
        Tries per file; waits ``backoff_s * 2**k`` seconds between them.
    on_file : callable, optional
        Called with each :class:`FileResult` as it is settled (progress display).
    key : str, optional
        The API key, only to scrub it from error messages (default: ``DATABENTO_API_KEY``).
    window : SnapshotWindow, optional
        Ask top-of-book schemas only for the snapshot window of each day (see :func:`plan_requests`);
        None: whole UTC days.

    Returns
    -------
    DownloadReport
        Never raises for one file's failure: it is in ``report.failed`` with the error.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    from volfast.io.dbn import write_sha256_sidecar

    key = key if key is not None else os.environ.get(KEY_ENV)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    from volfast.io.output import atomic_path, clean_temporaries

    clean_temporaries(root)  # what a killed run left half-way: downloads and sidecars (.<name>.<random>.tmp)
    for stale in root.glob(".*.part"):  # the temporaries of volfast <= 0.1's downloads
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    report = DownloadReport()
    for plan in plan_requests(req, window):
        day, schema, start, end = plan.day, plan.schema, plan.start, plan.end
        final = root / day_file_name(req.dataset, day, schema)
        res = FileResult(day=day, schema=schema, path=final, status="failed")
        if _present(final, req.dataset, schema):
            res.status, res.size = "present", final.stat().st_size
        else:
            for k in range(attempts):
                res.attempts = k + 1
                try:
                    with atomic_path(final) as tmp:  # renamed into place only once verified
                        tmp.unlink()  # get_range refuses an existing path: it creates the fresh name
                        client.timeseries.get_range(
                            dataset=req.dataset,
                            start=start,
                            end=end,
                            symbols=list(req.symbols),
                            schema=schema,
                            stype_in=req.stype_in,
                            path=str(tmp),
                        )
                        res.records, sha = _verify(tmp, req.dataset, schema)
                    if sha is not None:  # hashed while verifying: builds need not read it again
                        write_sha256_sidecar(final, sha)
                    res.status, res.size, res.error = "downloaded", final.stat().st_size, None
                    break
                except Exception as exc:  # network, HTTP, truncated or wrong file: retry, then report
                    res.error = _scrub(f"{type(exc).__name__}: {exc}", key)
                    if k + 1 < attempts:
                        sleep(backoff_s * 2**k)
        report.files.append(res)
        if on_file is not None:
            on_file(res)
    return report


def parse_list(values: Sequence[str]) -> tuple[str, ...]:
    """``("ES.OPT ES.FUT",)`` or ``("ES.OPT,ES.FUT",)`` or ``("ES.OPT", "ES.FUT")`` -> a tuple of names."""
    out: list[str] = []
    for v in values:
        out += [x for x in v.replace(",", " ").split() if x]
    return tuple(out)
