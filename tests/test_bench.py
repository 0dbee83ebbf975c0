"""``volfast bench`` on tiny sizes: the rows are measured and correct, JSON rows parse, a missing peer is
listed with its pip command, and bad arguments get one clear line."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from volfast.bench import _common, run_bench, to_json
from volfast.cli import main

KEYS = {"library", "version", "ns_per_item", "max_abs_err", "threads"}


@pytest.fixture(scope="module")
def iv_suite() -> Any:
    return run_bench(["iv"], quotes=300, threads=2)[0]


def test_iv_rows(iv_suite: Any) -> None:
    rows = {(r.library, r.threads): r for r in iv_suite.rows}
    vf = rows[("volfast", 1)]
    assert ("volfast", 2) in rows and vf.items == 300
    # volfast against 40-digit vols: LBR-grade (these ES-like vols are 0.1-0.6)
    assert vf.max_abs_err is not None and vf.max_abs_err < 1e-13
    assert 0 < vf.ns_per_item < 1e6
    floor = rows[("transcendental floor", 1)]
    assert floor.max_abs_err is None and floor.ns_per_item > 0
    # every installed peer is measured (the test extra installs scipy; the bench extra the rest)
    libs = {r.library for r in iv_suite.rows} | {m.library for m in iv_suite.missing}
    assert {"py_vollib_vectorized", "iv_engine", "QuantLib", "fast-vollib", "scipy brentq"} <= libs
    brentq = next(r for r in iv_suite.rows if r.library == "scipy brentq")
    assert brentq.max_abs_err is not None and brentq.max_abs_err < 1e-12
    if "py_vollib_vectorized" in rows:
        assert rows[("py_vollib_vectorized", 1)].max_abs_err < 1e-12  # type: ignore[operator]


def test_iv_json_rows(iv_suite: Any) -> None:
    doc = json.loads(json.dumps(to_json([iv_suite]), allow_nan=False))  # strict JSON: no inf or NaN
    assert doc["machine"]["simd"] in ("scalar", "avx2", "avx512") and doc["machine"]["cores"] >= 1
    assert all(KEYS <= set(r) for r in doc["rows"])
    vf = [r for r in doc["rows"] if r["library"] == "volfast" and r["threads"] == 1]
    assert len(vf) == 1 and vf[0]["ratio_to_volfast"] == 1.0
    for r in doc["rows"]:
        assert r["ratio_to_volfast"] == pytest.approx(r["ns_per_item"] / vf[0]["ns_per_item"])


def test_missing_peer_listed_with_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> Any:
        if name in ("py_vollib_vectorized", "iv_engine"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(_common.importlib, "import_module", fake)
    suite = run_bench(["iv"], quotes=150)[0]
    libs = {r.library for r in suite.rows}
    assert "py_vollib_vectorized" not in libs and "iv_engine" not in libs and "volfast" in libs
    missing = {m.library: m.pip for m in suite.missing}
    assert missing["py_vollib_vectorized"].startswith('pip install "py_vollib_vectorized==0.1.1"')
    assert missing["iv_engine"] == "pip install iv_engine"
    doc = to_json([suite])
    assert {"bench": "iv", "library": "iv_engine", "pip": "pip install iv_engine"} in doc["missing"]
    from rich.console import Console

    from volfast.bench import print_report

    con = Console(record=True, width=140)
    print_report([suite], console=con)
    text = con.export_text()
    assert "iv: iv_engine: pip install iv_engine" in text and 'pip install "volfast[bench]"' in text


def test_cli_bench_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "iv", "--quotes", "200", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())  # the file, not the console table
    assert {"volfast", "transcendental floor"} <= {r["library"] for r in doc["rows"] if r["bench"] == "iv"}
    vf = next(r for r in doc["rows"] if r["library"] == "volfast")
    assert vf["bench"] == "iv" and vf["items"] == 200 and vf["max_abs_err"] < 1e-13


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["bench", "iv", "--quotes", "5"], 2, "Invalid value for '--quotes'"),
        (["bench", "gpu"], 2, "'gpu' is not one of 'iv', 'svi', 'snapshot', 'day', 'all'"),
        (["bench", "iv", "--threads", "0"], 2, "Invalid value for '--threads'"),
        (
            ["bench", "iv", "--quotes", "100", "--json", "/dev/null/x.json"],
            1,
            "--json /dev/null/x.json: cannot write",
        ),
    ],
)
def test_cli_bench_bad_arguments(args: list[str], code: int, message: str) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_run_bench_rejects_unknown_suite() -> None:
    from volfast.errors import UsageError

    with pytest.raises(UsageError, match="unknown bench suite 'gpu'"):
        run_bench(["gpu"])


def test_svi_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from volfast.bench import svi

    monkeypatch.setattr(svi, "SCIPY_SLICES", 2)
    suite = run_bench(["svi"], quotes=100)[0]
    vf = [r for r in suite.rows if r.library == "volfast"]
    assert len(vf) == 2 and all(r.items == 12 for r in vf)  # independent and arbitrage-free, 1 thread
    # 0.6 vol points of noise: fits land within a few vol points of the true smile, never far off
    assert all(r.max_abs_err is not None and 0.0 < r.max_abs_err < 0.05 for r in vf)
    sp = next(r for r in suite.rows if r.library == "scipy least_squares")
    assert sp.items == 2 and sp.max_abs_err is not None and sp.max_abs_err < 0.05


def test_snapshot_rows() -> None:
    pytest.importorskip("databento")
    pytest.importorskip("pandas")
    suite = run_bench(["snapshot"], quotes=1000)[0]
    rows = {r.library: r for r in suite.rows}
    # volfast's snapshot is the pandas route's answer, quote for quote
    assert rows["volfast"].max_abs_err == 0.0 and rows["volfast"].items > 10_000
    assert {"databento + pandas", "databento decode"} <= set(rows)
    assert all(np.isfinite(r.ns_per_item) for r in suite.rows)


@pytest.mark.slow
def test_day_rows() -> None:
    for m in ("databento", "pandas", "py_vollib_vectorized", "scipy"):
        pytest.importorskip(m)
    suite = run_bench(["day"], quotes=1000)[0]
    rows = {r.library: r for r in suite.rows}
    # both pipelines recover the synthetic truth's ATM vols (a small day: within a few tenths of a vol point)
    assert rows["volfast"].max_abs_err is not None and rows["volfast"].max_abs_err < 0.01
    assert rows["do-it-yourself"].max_abs_err is not None and rows["do-it-yourself"].max_abs_err < 0.02


def test_cli_bench_bad_simd_level_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from volfast import _native

    monkeypatch.setenv("VOLFAST_SIMD", "bogus")
    monkeypatch.setattr(_native, "_SIMD_ERROR", _native._apply_simd_env())
    res = CliRunner().invoke(main, ["bench", "iv", "--quotes", "100"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        "Error: VOLFAST_SIMD=bogus: unknown SIMD level 'bogus' (expected auto, scalar, avx2 or avx512)"
    )
