"""Shared fixtures. Real Databento samples live in ../shared/data/dbn beside the repository; tests that
need them skip cleanly where the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Without an NVIDIA GPU the Triton kernels (kernels/, volfast.kernels) run in Triton's CPU interpreter; the
# variable must be set before triton is imported anywhere in the session.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DBN = REPO.parent / "shared" / "data" / "dbn"


@pytest.fixture(scope="session")
def shared_dbn() -> Path:
    if not SHARED_DBN.is_dir():
        pytest.skip(f"real DBN samples not found at {SHARED_DBN}")
    return SHARED_DBN


# -- DBN writing helpers for the io / snapshot tests -----------------------------------------------
class DBNWriter:
    """Writes small DBN files (any record array of a databento_dbn dtype) for tests.

    The header comes from ``databento_dbn.Metadata(...).encode()``; records are the raw bytes of a numpy
    structured array with the record's dtype (what ``bytes(record)`` gives, in bulk).
    """

    UNDEF = int(2**63 - 1)

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def mbp1_records(
        ts_recv, instrument_id, bid_px, ask_px, bid_sz=None, ask_sz=None, publisher_id=None, rtype: int = 0x01
    ):
        import databento_dbn as dd
        import numpy as np

        n = len(ts_recv)
        dt = np.dtype(dd.MBP1Msg._dtypes if rtype == 0x01 else dd.CBBOMsg._dtypes)
        a = np.zeros(n, dt)
        a["length"] = dt.itemsize // 4
        a["rtype"] = rtype
        a["publisher_id"] = 1 if publisher_id is None else publisher_id
        a["instrument_id"] = instrument_id
        a["ts_event"] = ts_recv
        a["ts_recv"] = ts_recv
        a["price"] = DBNWriter.UNDEF
        a["bid_px_00"] = bid_px
        a["ask_px_00"] = ask_px
        a["bid_sz_00"] = 1 if bid_sz is None else bid_sz
        a["ask_sz_00"] = 1 if ask_sz is None else ask_sz
        return a

    def write(
        self,
        name: str,
        records,
        *,
        schema: str = "mbp-1",
        dataset: str = "GLBX.MDP3",
        start: int = 0,
        end: int | None = None,
        mappings: dict | None = None,
        compress: bool = True,
        version: int = 3,
    ) -> Path:
        import datetime as dt
        from types import SimpleNamespace

        import databento_dbn as dd
        import zstandard

        # mappings: {raw_symbol: instrument_id}, one interval over 2000-01-01..2100-01-01
        maps = [
            SimpleNamespace(
                raw_symbol=sym,
                intervals=[
                    SimpleNamespace(
                        start_date=dt.date(2000, 1, 1), end_date=dt.date(2100, 1, 1), symbol=str(int(iid))
                    )
                ],
            )
            for sym, iid in (mappings or {}).items()
        ]
        md = dd.Metadata(
            dataset=dataset,
            start=start,
            **({"end": end} if end is not None else {}),
            stype_in=dd.SType.RAW_SYMBOL,
            stype_out=dd.SType.INSTRUMENT_ID,
            schema=dd.Schema(schema),
            symbols=sorted(mappings) if mappings else [],
            mappings=maps,
            version=version,
        )
        body = md.encode() + (records.tobytes() if hasattr(records, "tobytes") else b"".join(records))
        p = self.root / name
        p.write_bytes(zstandard.ZstdCompressor(level=1).compress(body) if compress else body)
        return p


@pytest.fixture()
def dbn_writer(tmp_path: Path) -> DBNWriter:
    return DBNWriter(tmp_path)


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic GLBX days from ``volfast.synth`` (batch layout + truth/); skipped if synth is
    absent."""
    try:
        from volfast.synth import generate_days
    except ImportError:
        pytest.skip("volfast.synth not available")
    import datetime as dt

    out = tmp_path_factory.mktemp("synth")
    generate_days(dt.date(2024, 3, 4), 2, out, seed=11, scale="small")
    return out


# -- one reduced demo run for the whole session ----------------------------------------------------------
#: its settings: 40 synthetic days through every stage, few epochs, a short stress
DEMO_RUN_SETTINGS: dict[str, Any] = dict(
    days=40, seed=3, epochs=8, executor="serial", stress_steps=8, mc_scenarios=200
)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of one reduced ``volfast demo`` run (``DEMO_RUN_SETTINGS``), made once per session
    and shared by test_demo (first-run manifests, reuse, a changed setting, put back as it was) and
    test_report (the report drawn from it): the pipeline is the slowest thing the suite runs."""
    import io

    from rich.console import Console

    from volfast.demo import DemoConfig, run_pipeline

    root = tmp_path_factory.mktemp("demo_run")
    run_pipeline(root, DemoConfig(**DEMO_RUN_SETTINGS), console=Console(file=io.StringIO(), width=160))
    return root
