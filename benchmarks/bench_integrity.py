"""What issue 14's integrity checks cost the snapshot: a full-scale synthetic day read with every check
(checksummed 4 MiB zstd frames, the frame holding the cut finished and verified, per-chunk record sanity
counts) against the same records as the reader took them before (one zstd frame without a checksum, no
sanity pass), in interleaved rounds in one process.

Run:  python -m pytest benchmarks/bench_integrity.py --benchmark-enable -s -p no:cacheprovider
      (VOLFAST_SNAPSHOT_DAY=/tmp/vf-full reuses a day made by
      ``volfast synth --start 2024-03-04 --days 1 --out /tmp/vf-full --seed 5 --scale full``)

Prints the median per-round ratios checked / unchecked of wall time and of CPU time (all threads; steadier
when the machine is shared) and asserts the two answers are equal and the CPU ratio stays under 1.2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import statistics
import time
from pathlib import Path

import pytest
import zstandard

import volfast
import volfast.snapshot.core as score
from volfast.io.dbn import write_sha256_sidecar

DAY = dt.date(2024, 3, 4)
ROUNDS = int(os.environ.get("VOLFAST_BENCH_ROUNDS", "9"))


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cached = os.environ.get("VOLFAST_SNAPSHOT_DAY")
    name = f"glbx-mdp3-{DAY:%Y%m%d}.mbp-1.dbn.zst"
    if cached and (Path(cached) / name).is_file():
        new = Path(cached)
    else:
        from volfast.synth import generate_days

        new = tmp_path_factory.mktemp("checked")
        generate_days(DAY, 1, new, seed=5, scale="full")
    old = tmp_path_factory.mktemp("unchecked")
    for p in new.glob("*.dbn.zst"):
        raw = zstandard.ZstdDecompressor().stream_reader(p.read_bytes(), read_across_frames=True).read()
        # the format synth wrote before issue 14: one frame, no content checksum (same level, a sidecar too)
        blob = zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=False).compress(raw)
        (old / p.name).write_bytes(blob)
        write_sha256_sidecar(old / p.name, hashlib.sha256(blob).hexdigest())
    shutil.copytree(new / "truth", old / "truth", dirs_exist_ok=True) if (new / "truth").is_dir() else None
    return new, old


def test_integrity_checks_cost(days: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    new, old = days
    real_update = score._Sanity.update

    def checked() -> object:
        monkeypatch.setattr(score._Sanity, "update", real_update)
        return volfast.take_snapshot(data=new, date=DAY)

    def unchecked() -> object:
        monkeypatch.setattr(score._Sanity, "update", lambda *a, **k: None)
        return volfast.take_snapshot(data=old, date=DAY)

    a, b = checked(), unchecked()  # warm-up, and the answers must agree
    assert a.table.to_pandas().equals(b.table.to_pandas())
    assert a.counts["records_negative_price"] == 0 and a.counts["records_outside_file_range"] == 0
    ratios, cpu_ratios, t_new, t_old = [], [], [], []
    for _ in range(ROUNDS):
        c0, t0 = time.process_time(), time.perf_counter()
        checked()
        c1, t1 = time.process_time(), time.perf_counter()
        unchecked()
        c2, t2 = time.process_time(), time.perf_counter()
        t_new.append(t1 - t0)
        t_old.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
        cpu_ratios.append((c1 - c0) / (c2 - c1))  # CPU time of every thread: steadier on a shared machine
    r, rc = statistics.median(ratios), statistics.median(cpu_ratios)
    n = a.counts["records"]
    print(
        f"\nsnapshot of a full-scale day ({n:,} mbp-1 records read to the cut): checked "
        f"{statistics.median(t_new) * 1e3:.1f} ms, unchecked {statistics.median(t_old) * 1e3:.1f} ms; "
        f"median ratio checked/unchecked: wall {r:.3f}, CPU {rc:.3f} over {ROUNDS} interleaved rounds"
    )
    assert rc < 1.2
