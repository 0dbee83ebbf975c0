"""World-model training time and out-of-sample accuracy at demo scale (one year, 252 trading days, of the
synthetic market's true surfaces), each model measured in the same run as its peers (PCA is the baseline
the VAEs must justify themselves against; persistence and AR(1) are the LSTM's).

    python -m pytest benchmarks/bench_models.py --benchmark-enable -s

The synthetic year is generated once (about 0.1 s per day) into ``$VOLFAST_CACHE`` (default
``~/.cache/volfast``) and reused. Training uses one torch thread (tiny models; more threads only add
synchronisation on a shared 2-core machine). CPU seconds (process time) are reported beside wall time,
since wall time on a shared machine measures the neighbours too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest
import torch

from volfast.models.evaluate import evaluate_run, metrics_markdown
from volfast.models.train import run_train

DEMO_DAYS = 252
SEED = 7
KINDS = ["pca", "vae", "cvae", "cvae-conv", "lstm"]


@pytest.fixture(scope="module")
def demo_data() -> Path:
    from volfast.synth import generate_days

    cache = Path(os.environ.get("VOLFAST_CACHE", Path.home() / ".cache" / "volfast"))
    folder = cache / f"synth-demo-s{SEED}"
    if (
        not (folder / "synth-config.json").is_file()
        or len(list((folder / "truth").glob("date=*"))) < DEMO_DAYS
    ):
        generate_days(dt.date(2024, 1, 2), DEMO_DAYS, folder, seed=SEED, scale="small")
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo_run")


TIMES: dict[str, dict[str, float]] = {}


@pytest.mark.parametrize("kind", KINDS)
def test_train_time(benchmark, demo_data: Path, run_dir: Path, kind: str) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)

    def once() -> None:
        c0, w0 = time.process_time(), time.perf_counter()
        run_train(kind, demo_data, run_dir, force=True)  # always train: never a reused run
        TIMES[kind] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}

    benchmark.pedantic(once, rounds=1, iterations=1)
    cfg = json.loads((run_dir / kind / "config.json").read_text())
    print(
        f"\n{kind}: {TIMES[kind]['cpu_s']:.1f} CPU s, {TIMES[kind]['wall_s']:.1f} wall s, "
        f"{cfg['epochs_run']} epochs"
    )
    assert TIMES[kind]["cpu_s"] < 120  # the budget: demo-scale training within 2 minutes


def test_out_of_sample_table(demo_data: Path, run_dir: Path) -> None:
    if not all((run_dir / k / "model.json").is_file() for k in KINDS):
        pytest.skip("run the training benchmarks first (same session)")
    res = evaluate_run(run_dir)
    print("\n" + metrics_markdown(res))
    print(f"run folder: {run_dir}")
    print("README table: python -m volfast.report.readme_figures RUN --write README.md --blocks world-model")
    for kind in ("vae", "cvae", "cvae-conv"):  # the bar: within 1.5x PCA at the same latent size
        base = res[kind]["test"]["pca_same_latent"]
        assert base["ratio"] <= 1.5, (kind, base)
        assert res[kind]["test"]["arbitrage"]["surfaces_with_violation"] == 0
    print(
        f"CPU seconds: { {k: round(v['cpu_s'], 1) for k, v in TIMES.items()} }, total "
        f"{sum(v['cpu_s'] for v in TIMES.values()):.1f}"
    )
    # PCA on an SSVI truth is near exact; the nonlinear models must at least be in the same league
    assert res["pca"]["test"]["rmse"] < 0.1
    for k in ("vae", "cvae", "cvae-conv"):
        assert res[k]["test"]["min_vol_pred"] > 0
    # the bar: out-of-sample RMSE at most 0.5 vol points (the CVAEs measured 0.29 and 0.47 with
    # seed 0; the VAE 0.49, so it gets a little room for other CPUs' rounding)
    assert res["cvae"]["test"]["rmse"] <= 0.5 and res["cvae-conv"]["test"]["rmse"] <= 0.5
    assert res["vae"]["test"]["rmse"] < 0.6
    lstm = res["lstm"]
    assert lstm["latent_mse_persistence"] > 0 and lstm["test_windows"] > 20
