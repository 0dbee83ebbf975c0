"""Issue 14: `volfast train` reuses a run only when its inputs, full settings and code identity all match
(the one freshness rule, :func:`volfast.io.freshness.run_stage`), and says why it retrains."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from volfast.io import freshness
from volfast.io.output import begin_manifest
from volfast.models import PCAConfig
from volfast.models.train import TrainConfig, data_inputs, train_stage

FAST = ["train.epochs=3", "train.patience=3"]
BASE = ["model.latent=3"]  # few components: every split of 12 days can fit them


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.surface import truth_dataset
    from volfast.synth import generate_days

    src = tmp_path_factory.mktemp("synth")
    generate_days(dt.date(2024, 3, 4), 12, src, seed=5, scale="small")
    out = tmp_path_factory.mktemp("grids")
    truth_dataset(src, out=out)
    return out


@pytest.fixture(scope="module")
def base_run(grids: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    res = train_stage("pca", grids, run, overrides=BASE)
    assert not res.reused and res.reason.startswith("no manifest")
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)  # copy2: sizes and modification times kept, so the copy is up to date
    return dst


def _manifest(folder: Path) -> dict[str, Any]:
    m: dict[str, Any] = json.loads((folder / "_manifest.json").read_text())
    return m


def test_second_run_is_reused_and_force_retrains(grids: Path, base_run: Path, tmp_path: Path) -> None:
    run = _copy(base_run, tmp_path)
    pt = run / "pca" / "model.pt"
    before = pt.stat().st_mtime_ns
    res = train_stage("pca", grids, run, overrides=BASE)
    assert (res.reused, res.reason) == (True, "up to date")
    assert pt.stat().st_mtime_ns == before
    res = train_stage("pca", grids, run, overrides=BASE, force=True)
    assert not res.reused and res.reason == "forced (--force)"
    assert pt.stat().st_mtime_ns != before
    m = _manifest(run / "pca")
    assert (m["stage"], m["status"], m["recomputed_because"]) == ("train pca", "complete", "forced (--force)")
    assert m["config"]["train"] == dataclasses.asdict(TrainConfig(**m["config"]["train"]))


def _changed(value: Any, field: dataclasses.Field[Any]) -> Any:
    alt = {"schedule": "cosine", "device": "cpu", "grid": "cvae", "latents": "amortised"}
    if field.name in alt:
        return alt[field.name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 1.5, 6) if value else 0.25
    if isinstance(value, (tuple, list)):
        return [v + 1 for v in value]
    raise AssertionError(f"no changed value for {field.name}={value!r}")


_SETTINGS = [("train", f) for f in dataclasses.fields(TrainConfig)]
_SETTINGS += [("model", f) for f in dataclasses.fields(PCAConfig)]


@pytest.mark.parametrize(("section", "field"), _SETTINGS, ids=[f"{s}.{f.name}" for s, f in _SETTINGS])
def test_each_setting_in_turn_retrains(
    grids: Path, base_run: Path, tmp_path: Path, section: str, field: dataclasses.Field[Any]
) -> None:
    run = _copy(base_run, tmp_path)
    old = _manifest(run / "pca")["config"][section][field.name]
    new = _changed(old, field)
    value = json.dumps(new) if not isinstance(new, str) else new
    overrides = [*BASE, f"{section}.{field.name}={value}"]
    if (section, field.name) == ("train", "patience"):
        overrides.append("train.epochs=1500")  # keep the pair valid
    res = train_stage("pca", grids, run, overrides=overrides)
    assert not res.reused, res.reason
    assert res.reason.startswith("settings changed: "), res.reason
    assert f"{section}.{field.name} " in res.reason, res.reason
    m = _manifest(run / "pca")
    assert m["recomputed_because"] == res.reason and m["status"] == "complete"
    got = m["config"][section][field.name]
    assert (list(got) if isinstance(got, list) else got) == new
    # and the new run is now the one reused
    assert train_stage("pca", grids, run, overrides=overrides).reused


def test_changed_or_removed_input_retrains(grids: Path, base_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "grids"
    shutil.copytree(grids, data)
    run = _copy(base_run, tmp_path)
    # same data content elsewhere: the data path is a setting (config.json records it for evaluate)
    res = train_stage("pca", data, run, overrides=BASE)
    assert not res.reused and "data " in res.reason
    assert train_stage("pca", data, run, overrides=BASE).reused
    day = sorted(data.glob("grids/date=*"))[-1]
    shutil.rmtree(day)
    res = train_stage("pca", data, run, overrides=BASE)
    assert not res.reused and res.reason.startswith("inputs changed: removed ['data/grids/"), res.reason
    # one file rewritten with other bytes of the same size: the content (sha256) decides
    f = sorted(data.glob("grids/**/*.parquet"))[0]
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    train_stage("pca", data, run, overrides=BASE)  # up to date again after the removal
    f.write_bytes(bytes(b))  # a new modification time, and the damaged bytes
    verdict = freshness.check(
        run / "pca", stage="train pca", config=_manifest(run / "pca")["config"], inputs=data_inputs(data)
    )
    assert not verdict.reusable, verdict.reason
    assert verdict.reason.endswith("changed content (sha256 differs)"), verdict.reason


def test_code_change_retrains(grids: Path, base_run: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run = _copy(base_run, tmp_path)
    other = dict(freshness.code_identity(), python_sha256="0" * 64)
    monkeypatch.setattr(freshness, "code_identity", lambda: other)
    res = train_stage("pca", grids, run, overrides=BASE)
    assert not res.reused and res.reason.startswith("code changed (python_sha256)"), res.reason
    assert _manifest(run / "pca")["code"]["python_sha256"] == "0" * 64


def test_interrupted_or_failed_run_is_redone(grids: Path, base_run: Path, tmp_path: Path) -> None:
    run = _copy(base_run, tmp_path)
    begin_manifest(run / "pca", stage="train pca", config={})  # what a killed run leaves
    res = train_stage("pca", grids, run, overrides=BASE)
    assert not res.reused and res.reason.startswith("interrupted: "), res.reason
    boom = "model.latent=500"  # more components than training days: the fit fails
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the model raises, the manifest says failed
        train_stage("pca", grids, run, overrides=[*BASE, boom])
    assert _manifest(run / "pca")["status"] == "failed"
    res = train_stage("pca", grids, run, overrides=BASE)
    assert not res.reused and res.reason.startswith("earlier run failed: "), res.reason


def test_lstm_retrains_when_its_encoder_changes(grids: Path, base_run: Path, tmp_path: Path) -> None:
    run = _copy(base_run, tmp_path)
    lstm = [*FAST, "model.window=2", "train.test_fraction=0.3"]
    assert not train_stage("lstm", grids, run, overrides=lstm, encoder=run / "pca").reused
    assert train_stage("lstm", grids, run, overrides=lstm, encoder=run / "pca").reused
    train_stage("pca", grids, run, overrides=["model.latent=2"])
    res = train_stage("lstm", grids, run, overrides=lstm, encoder=run / "pca")
    assert not res.reused and res.reason.startswith("input encoder/"), res.reason


def test_cli_train_reuses_then_retrains_on_set(grids: Path, base_run: Path, tmp_path: Path) -> None:
    from volfast.cli import main

    run = _copy(base_run, tmp_path)
    args = ["train", "--model", "pca", "--data", str(grids), "--out", str(run), "--set", "model.latent=3"]
    stamp = (run / "pca" / "_manifest.json").stat().st_mtime_ns
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert (run / "pca" / "_manifest.json").stat().st_mtime_ns == stamp
    r = CliRunner().invoke(main, [*args, "--set", "train.seed=7"])
    assert r.exit_code == 0, r.output
    assert _manifest(run / "pca")["recomputed_because"] == "settings changed: train.seed 0 -> 7"
