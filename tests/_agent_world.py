"""A small synthetic world for the agent tests, built once per test session: 40 small synthetic days ->
`volfast build` (serial) -> a tiny CVAE and LSTM trained for a few epochs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest


def agent_world(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(build output folder, run folder); cached under the session's base temp folder."""
    root = factory.getbasetemp() / "agent_world"
    build, run = root / "build", root / "run"
    if (run / "lstm" / "model.json").is_file():
        return build, run
    import torch

    from volfast.models.train import run_train
    from volfast.pipeline import BuildConfig, run_build
    from volfast.synth import generate_days

    torch.set_num_threads(1)
    data = root / "dbn"
    generate_days(dt.date(2024, 1, 2), 40, data, seed=3, scale="small")
    import dataclasses

    from volfast.pipeline.config import ExecutorConfig

    cfg = dataclasses.replace(BuildConfig(), executor=ExecutorConfig(kind="serial"))
    run_build(data, build, config=cfg, progress=False)
    run_train("cvae", build, run, overrides=["train.epochs=30", "train.patience=10"])
    run_train("lstm", build, run, overrides=["train.epochs=10", "model.window=5"])
    return build, run
