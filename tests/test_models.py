"""World models on the generator's true surfaces: training, positivity, reproducibility, save/load,
walk-forward runs, evaluation, bad input, CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from volfast.models import CVAE, VAE, ConvCVAE, CVAEConfig, ModelConfigError, PCAConfig, VAEConfig
from volfast.models.evaluate import evaluate_run
from volfast.models.io import load_model, save_model
from volfast.models.train import TrainConfig, load_config, run_train, train_surface
from volfast.surface import DatasetError, load_dataset, truth_dataset, write_day_grids
from volfast.surface.dataset import DayGrids

FAST = ["train.epochs=40", "train.patience=10"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.synth import generate_days

    out = tmp_path_factory.mktemp("synth40")
    generate_days(dt.date(2024, 3, 4), 40, out, seed=5, scale="small")
    return out


@pytest.fixture(scope="module")
def grids40(synth40: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grids40")
    truth_dataset(synth40, out=out)
    return out


def _masks(ds) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    n = len(ds)
    tr = np.zeros(n, dtype=bool)
    va = np.zeros(n, dtype=bool)
    tr[:24], va[24:30] = True, True
    return tr, va


# --------------------------------------------------------------------------------- architectures
def test_dense_decoder_is_the_fusable_sequential() -> None:
    """The MLP part of the decoder is the shape the fused Triton kernel runs (no output activation: it
    feeds the eSSVI head), and its output is the 3 x 3 eSSVI raw parameters."""
    m = CVAE(CVAEConfig())
    kinds = [type(x) for x in m.decoder]
    assert kinds == [torch.nn.Linear, torch.nn.SiLU, torch.nn.Linear, torch.nn.SiLU, torch.nn.Linear]
    assert m.decoder[0].in_features == 4 + 3 and m.decoder[-1].out_features == 9
    assert m.decoder[0].out_features == 48 and m.dec_lin.out_features == 9


@pytest.mark.parametrize("cls", [CVAE, ConvCVAE])
def test_cvae_positivity_is_real(cls: type) -> None:
    """Vols below the old (x - 0.25) / 0.1 centre are reachable, and no z gives a non-positive vol."""
    torch.manual_seed(0)
    m = cls(CVAEConfig())
    x = 0.05 + 0.02 * torch.rand(16, 3, 11)  # a 5-7% vol regime
    y = torch.tensor([[0.03, 0.06, 0.1]]).repeat(16, 1)
    m.fit_stats(x, y)
    with torch.no_grad():
        out = m.decode(torch.zeros(16, 4), y)
        assert float(out.max()) < 0.25  # starts at the training mean, well below 0.25
        torch.testing.assert_close(out.mean(0), x.mean(0), atol=0.03, rtol=0)
        wild = m.decode(50 * torch.randn(256, 4), y.repeat(16, 1))
    assert bool((wild > 0).all())


def test_vae_positivity_and_shapes() -> None:
    m = VAE(VAEConfig())
    x = 0.1 + 0.05 * torch.rand(8, 32, 32)
    m.fit_stats(x)
    x_hat, mu, logvar = m(x)
    assert x_hat.shape == (8, 32, 32) and mu.shape == (8, 8) and logvar.shape == (8, 8)
    with torch.no_grad():
        assert bool((m.decode(100 * torch.randn(64, 8)) > 0).all())
    with pytest.raises(ValueError, match="not divisible"):
        VAEConfig(shape=(30, 32))


def test_decode_backends() -> None:
    m = CVAE(CVAEConfig())
    z, y = torch.randn(5, 4), torch.rand(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(m.decode(z, y), m.decode(z, y, backend="torch"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="backend"):
        m.decode(z, y, backend="cuda")
    try:
        import volfast.kernels.mlp_decoder  # noqa: F401

        have_kernel = True
    except Exception:
        have_kernel = False
    if not have_kernel:
        with pytest.raises(RuntimeError, match="triton"):
            m.decode(z, y, backend="triton")


# --------------------------------------------------------------------------- training on truth
def test_pca_fits_training_period_only_and_reconstructs_truth(grids40: Path) -> None:
    ds = load_dataset(grids40)
    tr, va = _masks(ds)
    cfg = PCAConfig(latent=8)
    model, _ = train_surface("pca", ds, cfg, TrainConfig(), tr, va)
    rows = tr | va
    np.testing.assert_allclose(model.mean.numpy().reshape(32, 32), ds.image[rows].mean(0), atol=1e-12)
    test = torch.as_tensor(ds.image[30:], dtype=torch.float32)
    err = (model(test) - test).abs().max()
    assert float(err) < 0.002  # SSVI truth is low-dimensional: 8 components hold it to 0.2 vol points


def test_training_is_reproducible_and_learns(grids40: Path) -> None:
    ds = load_dataset(grids40)
    tr, va = _masks(ds)
    tc = TrainConfig(epochs=60, patience=60, seed=3)
    m1, h1 = train_surface("cvae", ds, CVAEConfig(), tc, tr, va)
    m2, _ = train_surface("cvae", ds, CVAEConfig(), tc, tr, va)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert set(h1[0]) == {"val_recon", "init"}  # the starting point is scored (and kept if best)
    # refined latents (the default): the encoder's regression on the trained latents is logged apart
    assert set(h1[1]) == {"total", "recon", "kl", "corr", "encoder", "val_recon"}
    # early stopping restores the best validation epoch: the returned model scores exactly that (with the
    # validation's 5 refinement steps; the model itself keeps its configured 15)
    assert m1.config.refine == CVAEConfig().refine
    m1.config = dataclasses.replace(m1.config, refine=5)
    x_va = torch.as_tensor(ds.cvae[va], dtype=torch.float32)
    y_va = torch.as_tensor(ds.cvae_expiry_years[va], dtype=torch.float32)
    with torch.no_grad():
        xv, _, _ = m1(x_va, y_va, sample=False)
        val = float(m1.norm.loss_error(xv, x_va).square().mean())
    assert val == pytest.approx(min(h["val_recon"] for h in h1), rel=1e-5)
    assert val <= h1[0]["val_recon"]
    m3, _ = train_surface("cvae", ds, CVAEConfig(), dataclasses.replace(tc, seed=4), tr, va)
    assert not torch.equal(m1.decoder[0].weight, m3.decoder[0].weight)


@pytest.mark.parametrize("kind", ["vae", "cvae", "cvae-conv", "pca"])
def test_save_load_bit_for_bit(grids40: Path, tmp_path: Path, kind: str) -> None:
    ds = load_dataset(grids40)
    tr, va = _masks(ds)
    cfg = {
        "vae": VAEConfig(channels=(4, 8, 8)),
        "cvae": CVAEConfig(),
        "cvae-conv": CVAEConfig(),
        "pca": PCAConfig(latent=4),
    }[kind]
    model, _ = train_surface(kind, ds, cfg, TrainConfig(epochs=3, patience=3), tr, va)
    save_model(tmp_path / kind, kind, model)
    k2, back = load_model(tmp_path / kind)
    assert k2 == kind and back.config == model.config
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    z = torch.randn(6, cfg.latent)
    y = torch.as_tensor(ds.cvae_expiry_years[:6], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(back.decode(z, y), model.decode(z, y), rtol=0, atol=0)
    # a config that does not match the saved model
    other = dataclasses.replace(cfg, latent=cfg.latent + 1)
    with pytest.raises(ModelConfigError, match="does not match the saved model"):
        load_model(tmp_path / kind, config=other)
    meta = json.loads((tmp_path / kind / "model.json").read_text())
    meta["config"]["latent"] += 1
    (tmp_path / kind / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelConfigError, match="model.pt: weights do not fit"):
        load_model(tmp_path / kind)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reload_decodes_on_gpu(grids40: Path, tmp_path: Path) -> None:
    ds = load_dataset(grids40)
    tr, va = _masks(ds)
    model, _ = train_surface("cvae", ds, CVAEConfig(), TrainConfig(epochs=3, device="cpu"), tr, va)
    save_model(tmp_path, "cvae", model)
    _, gpu = load_model(tmp_path, map_location="cuda")
    z, y = torch.randn(6, 4), torch.rand(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(gpu.decode(z.cuda(), y.cuda(), backend="torch").cpu(), model.decode(z, y))


# ---------------------------------------------------------------------------------- run + evaluate
def test_run_train_evaluate_all_models(synth40: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    for kind in ("pca", "cvae"):
        run_train(kind, synth40, run, overrides=FAST)
    run_train("lstm", synth40, run, overrides=[*FAST, "model.window=3", "train.test_fraction=0.3"])
    cfg = json.loads((run / "cvae" / "config.json").read_text())
    assert cfg["model"]["shape"] == [3, 11] and cfg["train"]["epochs"] == 40
    assert cfg["counts"]["train"] + cfg["counts"]["val"] + cfg["counts"]["test"] == 40
    assert cfg["split"]["val_start"] < cfg["split"]["test_start"]
    lcfg = json.loads((run / "lstm" / "config.json").read_text())
    assert lcfg["encoder"].endswith("cvae") and lcfg["split"] == cfg["split"]  # the encoder's split
    res = evaluate_run(run)
    assert list(res) == ["pca", "cvae", "lstm"]
    assert res["pca"]["test"]["rmse"] < 0.5 and res["pca"]["test"]["ssim"] > 0.99
    assert res["cvae"]["test"]["min_vol_pred"] > 0
    lstm = res["lstm"]
    for key in ("latent_mse_persistence", "latent_mse_ar1", "latent_mse_lstm", "vol_improvement_lstm"):
        assert key in lstm
    lo, hi = lstm["vol_improvement_lstm"]["ci95"]
    assert lo <= lstm["vol_improvement_lstm"]["mean"] <= hi
    md = (run / "metrics.md").read_text()
    assert "| pca | image | 8 |" in md and "lstm:persistence" in md
    assert json.loads((run / "metrics.json").read_text())["pca"]["kind"] == "pca"


def test_search_picks_by_donate_weighted_cv(grids40: Path, tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\ngrid = "image"\n[train]\nfolds = 3\n[search]\n"model.latent" = [1, 6]\n')
    folder = run_train("pca", grids40, tmp_path / "run", config_path=toml)
    cfg = json.loads((folder / "config.json").read_text())
    scores = [r["score"] for r in cfg["search"]["results"]]
    assert cfg["model"]["latent"] == 6 and scores[1] < scores[0]
    assert cfg["search"]["results"][0]["weights"] == [0.25, 0.25, 0.5]


# ------------------------------------------------------------------------------------- bad input
def test_nan_days_are_dropped_and_counted(grids40: Path, tmp_path: Path) -> None:
    ds = load_dataset(grids40)
    out = tmp_path / "holes"
    for i in range(len(ds)):
        img, cv = ds.image[i].copy(), ds.cvae[i].copy()
        if i in (3, 17):
            img[5, 7] = np.nan  # a failed fit left a hole
        if i == 9:
            cv[2] = np.nan  # only two expiries listed
        g = DayGrids(ds.dates[i].astype(object), img, cv, ds.cvae_expiry_years[i], ds.delta[i], ds.delta_k[i])
        write_day_grids(out, g, ds.config)
    f = run_train("pca", out, tmp_path / "r")
    assert json.loads((f / "config.json").read_text())["counts"]["dropped_incomplete"] == 2
    f = run_train("cvae", out, tmp_path / "r", overrides=FAST)
    assert json.loads((f / "config.json").read_text())["counts"]["dropped_incomplete"] == 1


def test_bad_inputs_have_clear_errors(grids40: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="unknown keys"):
        load_config("cvae", None, ["model.latnet=3"])
    with pytest.raises(ModelConfigError, match="expected"):
        load_config("cvae", None, ["model.latent=four"])
    with pytest.raises(ModelConfigError, match="model.KEY=VALUE"):
        load_config("cvae", None, ["latent=3"])
    with pytest.raises(ModelConfigError, match="unknown model kind"):
        load_config("gan", None, [])
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ModelConfigError, match="invalid TOML"):
        load_config("vae", bad, [])
    few = tmp_path / "few"
    ds = load_dataset(grids40).subset(slice(0, 3))
    for i in range(3):
        write_day_grids(
            few,
            DayGrids(
                ds.dates[i].astype(object),
                ds.image[i],
                ds.cvae[i],
                ds.cvae_expiry_years[i],
                ds.delta[i],
                ds.delta_k[i],
            ),
            ds.config,
        )
    with pytest.raises(DatasetError, match="need at least 4"):
        run_train("pca", few, tmp_path / "r")
    toml = tmp_path / "cv.toml"
    toml.write_text('[train]\nfolds = 12\n[search]\n"model.latent" = [2, 3]\n')
    with pytest.raises(ValueError, match="too few for 12 walk-forward folds"):
        run_train("pca", grids40, tmp_path / "r", config_path=toml)
    with pytest.raises(ModelConfigError, match="no trained encoder"):
        run_train("lstm", grids40, tmp_path / "empty")
    with pytest.raises(ModelConfigError, match="not a saved volfast model"):
        load_model(tmp_path)


def test_cli_train_and_evaluate(grids40: Path, tmp_path: Path) -> None:
    from volfast.cli import main

    toml = tmp_path / "pca.toml"
    toml.write_text("[model]\nlatent = 3\n")
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            "pca",
            "--data",
            str(grids40),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(toml),
            "--set",
            "train.seed=2",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "run" / "pca" / "config.json").read_text())
    assert cfg["model"]["latent"] == 3 and cfg["train"]["seed"] == 2
    r = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())  # the file evaluate writes
    assert set(metrics) == {"pca"} and "| pca | image | 3 |" in (tmp_path / "run" / "metrics.md").read_text()
    r = CliRunner().invoke(
        main,
        [
            "train",
            "--model",
            "vae",
            "--data",
            str(grids40),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "model.nope=1",
        ],
    )
    assert r.exit_code != 0 and "unknown keys" in r.output


# ------------------------------------------------------------------- learned statistics and refit
@pytest.mark.parametrize("refit", [False, True])
def test_cvae_statistics_come_from_fitting_days_only(grids40: Path, refit: bool) -> None:
    """Per-cell mean/std (encoder input, decoder output scale, loss weights) and the condition's
    standardisation are those of the training days (plus validation days after a refit), never the
    test days; the decoder starts at that mean surface."""
    ds = load_dataset(grids40)
    tr, va = _masks(ds)
    tc = TrainConfig(epochs=8, patience=8, schedule="cosine", refit=refit)
    model, hist = train_surface("cvae", ds, CVAEConfig(), tc, tr, va)
    fit = (tr | va) if refit else tr
    x, y = ds.cvae[fit], ds.cvae_expiry_years[fit]
    np.testing.assert_allclose(model.norm.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.norm.scale.numpy(), x.std(0, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(model.cond.mean.numpy(), y.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.cond.std.numpy(), y.std(0, ddof=1), rtol=1e-4)
    everything = ds.cvae[: len(ds)]
    assert not np.allclose(model.norm.mean.numpy(), everything.mean(0), rtol=1e-4)  # test days differ
    phase1 = [h for h in hist if "refit" not in h]
    refits = [h for h in hist if "refit" in h]
    assert len(phase1) == 9 and all("val_recon" in h for h in phase1) and "init" in phase1[0]
    if refit:  # as many epochs as the best validation epoch of the first phase (0: the start itself)
        best = int(np.argmin([h["val_recon"] for h in phase1]))
        assert len(refits) == best
    else:
        assert not refits
    # the decoder's output statistics are the SSVI calibrations of exactly these days
    from volfast.models.ssvi_head import calibrate_raw

    raw = calibrate_raw(
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.float32),
        model.head.k,
        v_scale=float(model.head.v_scale),
    )
    torch.testing.assert_close(model.head.u_mean, raw.mean(0), rtol=1e-3, atol=1e-3)


def test_per_cell_loss_and_output_scale() -> None:
    """loss=seeds is the per-cell standardised error; the default (vol) one scalar scale; a vol regime far
    below the training days' is still reachable (vols are positive for any z)."""
    torch.manual_seed(0)
    x = 0.2 + torch.linspace(0.001, 0.05, 33).reshape(1, 3, 11) * torch.randn(64, 1, 1)
    y = torch.tensor([[0.03, 0.06, 0.1]]).repeat(64, 1)
    seeds = CVAE(CVAEConfig(loss="seeds"))
    seeds.fit_stats(x.abs(), y)
    err = seeds.norm.loss_error(x[:1] + seeds.norm.scale, x[:1])
    torch.testing.assert_close(err, torch.ones_like(err))
    m = CVAE(CVAEConfig())
    m.fit_stats(x.abs(), y)
    err = m.norm.loss_error(x[:1] + 0.01, x[:1])
    torch.testing.assert_close(err, torch.full_like(err, 0.01 / float(m.norm.loss_scale)))
    with torch.no_grad():
        m.dec_lin.bias.zero_()
        m.dec_lin.bias[:3] = -30.0  # forward variances at their floor
        low = m.decode(torch.zeros(2, 4), y[:2])
    assert bool((low > 0).all()) and float(low.max()) < 0.05


def test_kind_train_defaults_and_overrides() -> None:
    _, tc, _ = load_config("cvae", None, [])
    assert tc.refit and tc.epochs == 150 and tc.patience == 15 and tc.lr == 1e-3
    _, tc, _ = load_config("cvae", None, ["train.refit=false", "train.epochs=50"])
    assert not tc.refit and tc.epochs == 50 and tc.schedule == "constant"
    _, tc, _ = load_config("vae", None, [])
    assert tc.refit and tc.epochs == 150
    _, tc, _ = load_config("pca", None, [])
    assert tc == TrainConfig()
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
