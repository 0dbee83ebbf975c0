"""Training runners: one model kind on a grid dataset, walk-forward split, early stopping on a validation
slice of the training period, optional hyperparameter search by expanding-window cross-validation.

A run folder ``OUT/<kind>/`` holds ``model.pt`` + ``model.json`` (:mod:`volfast.models.io`), the resolved
configuration ``config.json`` (model, train, data, split, counts, timing) and ``history.json`` (per-epoch
loss terms, logged separately).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volfast._toml import apply_overrides, read_tables
from volfast.models.data import (
    Split,
    grid_axis_k,
    open_data,
    quoted_mask,
    sequence_breaks,
    split_dates,
    usable,
)
from volfast.models.io import (
    META_FILE,
    MODEL_FILE,
    MODEL_KINDS,
    ModelConfigError,
    SettingsError,
    build_model,
    config_from_dict,
    load_model,
    save_model,
)
from volfast.models.losses import vae_loss
from volfast.models.lstm import LSTMConfig, make_windows
from volfast.models.walkforward import EarlyStopping, select
from volfast.surface import DatasetError, SurfaceDataset

__all__ = ["TrainConfig", "encode_dataset", "fit_autoencoder", "load_config", "run_train", "train_surface"]

GRID_OF = {"vae": "image", "cvae": "cvae", "cvae-conv": "cvae"}
START_FILE = "start.pt"  # the untrained start of a (C)VAE, beside model.pt

# Per-kind [train] defaults under a config file's table and --set overrides (README "World model"). The
# (C)VAEs start at PCA in SSVI parameter space, which the validation slice of the demo year usually keeps:
# a short run at a gentle rate with early stopping, then a refit on the whole training period (train +
# validation days, statistics included) for the best epoch count (0: the start itself, refitted).
_SSVI_TRAIN = {"epochs": 150, "patience": 15, "lr": 1e-3, "refit": True}
KIND_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "vae": dict(_SSVI_TRAIN),
    "cvae": dict(_SSVI_TRAIN),
    "cvae-conv": dict(_SSVI_TRAIN),
    # the LSTM's epoch count is chosen on walk-forward folds of the training period (fit_lstm_folds)
    "lstm": {"epochs": 40, "lr": 1e-3, "folds": 4},
}


def grid_of(kind: str, mcfg: Any) -> str:
    """The grid a model kind reads (PCA: its config's ``grid``)."""
    return str(mcfg.grid) if kind == "pca" else GRID_OF[kind]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1500  # maximum; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    schedule: str = "constant"  # learning-rate schedule: constant | cosine (to lr_min over `epochs`)
    lr_min: float = 3e-5  # cosine schedule's final learning rate
    refit: bool = False  # after early stopping, retrain from the same seed on train + validation days for
    #                      the chosen number of epochs (final weights); the test period stays unseen
    patience: int = 150  # epochs without validation improvement before stopping (best weights kept)
    val_fraction: float = 0.15  # last part of the training period: the early-stopping slice
    test_fraction: float = 0.2  # last part of the data: never seen in training or model choice
    folds: int = 5  # walk-forward folds for the hyperparameter search (used only with a [search] table)
    latents: str = "refined"  # (C)VAEs: what the decoder trains on. refined: each training day's latent is a
    #                            parameter, started at its refined encoding and trained with the decoder
    #                            (what evaluation decodes: the refined latent); the encoder learns to
    #                            predict it. amortised: the encoder's mu, as in a plain VAE
    seed: int = 0
    threads: int = 1  # torch.set_num_threads (0: leave torch's default); tiny models run best on one
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.patience < 1:
            raise ValueError("TrainConfig: epochs, batch_size, patience >= 1 and lr > 0 needed")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.schedule must be constant or cosine; got {self.schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be auto, cpu or cuda; got {self.device!r}")
        if self.latents not in ("refined", "amortised"):
            raise ValueError(f"TrainConfig.latents must be refined or amortised; got {self.latents!r}")


def _device(tcfg: TrainConfig) -> torch.device:
    if tcfg.device == "cuda" or (tcfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------- config
def load_config(
    kind: str, path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> tuple[Any, TrainConfig, dict[str, list[Any]]]:
    """Model config, train config and search grid from a TOML file (tables ``[model]``, ``[train]``,
    ``[search]`` with lists of values keyed ``"model.latent"`` etc.) and ``section.key=value`` overrides."""
    if kind not in MODEL_KINDS:
        raise SettingsError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    raw = read_tables(path, ("model", "train", "search"), error=SettingsError)
    sections: dict[str, dict[str, Any]] = {s: dict(raw.get(s, {})) for s in ("model", "train")}
    sections["train"] = KIND_TRAIN_DEFAULTS.get(kind, {}) | sections["train"]
    apply_overrides(sections, overrides, error=SettingsError)
    _, cfg_cls = MODEL_KINDS[kind]
    where = str(path) if path else "config"
    mcfg = config_from_dict(cfg_cls, sections["model"], where=f"{where} [model]")
    tcfg = config_from_dict(TrainConfig, sections["train"], where=f"{where} [train]")
    search = {k: list(v) if isinstance(v, list) else [v] for k, v in raw.get("search", {}).items()}
    for k in search:
        sec, _, name = k.partition(".")
        if sec != "model" or name not in {f.name for f in dataclasses.fields(cfg_cls)}:
            raise SettingsError(f"{where} [search]: {k!r} is not model.<field of {cfg_cls.__name__}>")
    return mcfg, tcfg, search


# ------------------------------------------------------------------------------------------- training
def _tensor(a: np.ndarray, dev: torch.device) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32, device=dev)


def fit_autoencoder(
    model: Any,
    x_tr: torch.Tensor,
    y_tr: torch.Tensor | None,
    x_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    tcfg: TrainConfig,
    w_tr: torch.Tensor | None = None,
    w_val: torch.Tensor | None = None,
) -> list[dict[str, float]]:
    """AdamW on recon MSE + alpha KL + beta corr (alpha, beta from ``model.config``); early stopping on the
    validation reconstruction MSE (mu decoded, no sampling); the best epoch's weights are restored.

    ``tcfg.latents == "refined"`` (default): evaluation decodes the *refined* latent of a surface (the
    encoder's mu improved by Levenberg-Marquardt steps, :mod:`volfast.models._refine`), not the network's
    mu, so the decoder trains on what it will decode: each training day's latent is a parameter, started
    at its refined encoding and optimised with the decoder on the reconstruction loss (KL at the
    encoder's logvar, the sample drawn around it), while the encoder's mu regresses on those latents
    (squared error, a separate term: it only starts the refinement). "amortised": the decoder trains on
    the encoder's mu, as in a plain VAE; the training gradient then mostly corrects the amortised
    encoder's error, which refinement removes at evaluation anyway.
    ``x_val=None``: no validation, all ``tcfg.epochs`` run and the final weights are kept (the refit).
    ``w_tr``, ``w_val`` (like the grids): each cell's squared error times its weight (built surfaces: the
    quoted range at 1, extrapolated cells at ``extrapolated_weight``), in training, validation and the
    refinement of validation latents.
    Returns the per-epoch history (train loss terms averaged over batches, and ``val_recon``)."""

    def err(x_hat: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        e = model.norm.loss_error(x_hat, x)
        return e if w is None else e * w.sqrt()

    cfg = model.config
    gen = torch.Generator(device="cpu").manual_seed(tcfg.seed)
    free = tcfg.latents == "refined" and getattr(cfg, "refine", 0) > 0
    z_free: torch.Tensor | None = None
    if free:  # each training day's latent: its refined encoding, then a parameter
        model.eval()
        with torch.no_grad():
            z_free = model.encode(x_tr, y_tr, weight=w_tr)[0].detach().clone()
        z_free.requires_grad_(True)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if z_free is not None:
        groups.append({"params": [z_free], "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    stop = EarlyStopping(tcfg.patience)
    history: list[dict[str, float]] = []
    n = x_tr.shape[0]
    beta = cfg.beta if getattr(cfg, "loss", "seeds") == "seeds" else 0.0
    # validation encodes with at most 5 refinement steps (a selection score, not the final evaluation)
    if getattr(cfg, "refine", 0) > 5:
        model.config = dataclasses.replace(cfg, refine=5)
    if x_val is not None:  # epoch 0: the starting point (PCA in parameter space) is a candidate too
        model.eval()
        with torch.no_grad():
            xv, _, _ = model(x_val, y_val, sample=False, weight=w_val)
            val0 = float(err(xv, x_val, w_val).square().mean())
        history.append({"val_recon": val0, "init": 1.0})
        stop.step(val0, model.state_dict())
    for epoch in range(tcfg.epochs):
        if tcfg.schedule == "cosine":
            lr = tcfg.lr_min + 0.5 * (tcfg.lr - tcfg.lr_min) * (1 + math.cos(math.pi * epoch / tcfg.epochs))
            for g in opt.param_groups:
                g["lr"] = lr
        model.train()
        perm = torch.randperm(n, generator=gen).to(x_tr.device)
        sums = {"total": 0.0, "recon": 0.0, "kl": 0.0, "corr": 0.0}
        if z_free is not None:
            sums["encoder"] = 0.0
        n_b = 0
        for s in range(0, n, tcfg.batch_size):
            b = perm[s : s + tcfg.batch_size]
            if b.numel() < 2:
                continue
            yb = None if y_tr is None else y_tr[b]
            if z_free is None:
                x_hat, mu, logvar = model(x_tr[b], yb)
            else:
                enc_mu, logvar = model.encode(x_tr[b], yb)  # training mode: the network's mu
                mu = z_free[b]
                x_hat = model.decode(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), yb)
            terms = vae_loss(
                err(x_hat, x_tr[b], None if w_tr is None else w_tr[b]), mu, logvar, alpha=cfg.alpha, beta=beta
            )
            total = terms.total
            if z_free is not None:
                enc = (enc_mu - mu.detach()).square().mean()
                total = total + enc
                sums["encoder"] += float(enc.detach())
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            for k, v in terms.floats().items():
                sums[k] += v
            n_b += 1
        rec = {k: v / max(n_b, 1) for k, v in sums.items()}
        if x_val is None:
            history.append(rec)
            continue
        model.eval()
        with torch.no_grad():
            xv, _, _ = model(x_val, y_val, sample=False, weight=w_val)
            val = float(err(xv, x_val, w_val).square().mean())
        history.append(rec | {"val_recon": val})
        if stop.step(val, model.state_dict()):
            break
    if x_val is not None and stop.best_state is not None:
        model.load_state_dict(stop.best_state)
    model.config = cfg
    model.eval()
    return history


def train_surface(
    kind: str,
    ds: SurfaceDataset,
    mcfg: Any,
    tcfg: TrainConfig,
    train: np.ndarray,
    val: np.ndarray,
    weights: np.ndarray | None = None,
    start: dict[str, torch.Tensor] | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train a reconstruction model on rows ``train`` of ``ds`` (boolean or index arrays of complete days),
    early-stopping on rows ``val``. PCA is fitted on train and validation rows together (no epochs).
    With ``tcfg.refit`` the model is then rebuilt from the same seed, its statistics refitted on train and
    validation rows, and trained on them for the early-stopped number of epochs (the history then has
    ``"refit": 1.0`` records after the first phase's). ``weights`` (N, R, K), like the model's grid: each
    cell's weight in calibration, loss and validation (:func:`cell_weights`; None: all 1). ``start``: a
    dict that receives the state of the untrained start the final weights grew from (the refit's start,
    fitted on train and validation rows; without refit the first phase's), to score training's gain."""
    grid = grid_of(kind, mcfg)
    dev = _device(tcfg)
    torch.manual_seed(tcfg.seed)
    model = build_model(kind, mcfg).to(dev)
    x_all = ds.grid(grid)
    y_all = ds.cvae_expiry_years
    if kind == "pca":
        rows = np.union1d(np.flatnonzero(_as_mask(train, len(ds))), np.flatnonzero(_as_mask(val, len(ds))))
        model.fit(_tensor(x_all[rows], dev))
        return model.eval(), []
    tr, va = _as_mask(train, len(ds)), _as_mask(val, len(ds))
    x_tr, x_va = _tensor(x_all[tr], dev), _tensor(x_all[va], dev)
    cond = kind != "vae"
    y_tr = _tensor(y_all[tr], dev) if cond else None
    y_va = _tensor(y_all[va], dev) if cond else None
    w_tr = None if weights is None else _tensor(weights[tr], dev)
    w_va = None if weights is None else _tensor(weights[va], dev)
    model.fit_stats(x_tr, y_tr, w_tr)
    if start is not None:
        start.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    history = fit_autoencoder(model, x_tr, y_tr, x_va, y_va, tcfg, w_tr, w_va)
    if not tcfg.refit:
        return model, history
    # epochs of the best validation score (the first history record is the untrained start: 0 epochs)
    best = min(range(len(history)), key=lambda i: history[i]["val_recon"])
    torch.manual_seed(tcfg.seed)
    model = build_model(kind, mcfg).to(dev)
    both = tr | va
    x_b = _tensor(x_all[both], dev)
    y_b = _tensor(y_all[both], dev) if cond else None
    w_b = None if weights is None else _tensor(weights[both], dev)
    model.fit_stats(x_b, y_b, w_b)
    if start is not None:
        start.update({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    if best == 0:
        return model.eval(), history
    refit = fit_autoencoder(model, x_b, y_b, None, None, dataclasses.replace(tcfg, epochs=best), w_tr=w_b)
    return model, history + [r | {"refit": 1.0} for r in refit]


def _as_mask(sel: np.ndarray, n: int) -> np.ndarray:
    sel = np.asarray(sel)
    if sel.dtype == bool:
        return sel
    m = np.zeros(n, dtype=bool)
    m[sel] = True
    return m


def _with_shape(kind: str, mcfg: Any, ds: SurfaceDataset) -> Any:
    grid = grid_of(kind, mcfg)
    shape = tuple(ds.grid(grid).shape[1:])
    axes: dict[str, Any] = {}
    if kind != "pca":  # the SSVI decoders need the grid's log-moneyness (and the image's tenors)
        axes["k"] = tuple(float(v) for v in grid_axis_k(ds.config, grid))
        if grid == "image":
            axes["tenors"] = tuple(float(v) for v in ds.config.image_tenor_years)
    try:
        return dataclasses.replace(mcfg, shape=shape, **axes)
    except ValueError as exc:
        raise ModelConfigError(
            f"{kind}: the data's {grid} grid {shape} does not fit the config: {exc}"
        ) from None


def _cv_score(
    kind: str,
    ds: SurfaceDataset,
    mcfg: Any,
    tcfg: TrainConfig,
    rows: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
) -> float:
    """Fold score: out-of-fold reconstruction MSE (vol^2) of a model trained on fold rows ``tr`` (its own
    early-stopping slice is the last ``val_fraction`` of them)."""
    n_val = max(1, int(round(tr.size * tcfg.val_fraction)))
    fit, val = rows[tr[:-n_val]], rows[tr[-n_val:]]
    model, _ = train_surface(kind, ds, mcfg, tcfg, fit, val)
    x, y = _grid_xy(kind, mcfg, ds, rows[te], _device(tcfg))
    with torch.no_grad():
        x_hat = reconstruct(kind, model, x, y)
    return float((x_hat - x).square().mean())


def _grid_xy(
    kind: str, mcfg: Any, ds: SurfaceDataset, rows: np.ndarray, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    grid = grid_of(kind, mcfg)
    x = _tensor(ds.grid(grid)[rows], dev)
    y = _tensor(ds.cvae_expiry_years[rows], dev) if grid == "cvae" else None
    return x, y


def reconstruct(kind: str, model: Any, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Decode the latent mean of each grid: (B, H, W) -> (B, H, W) vols."""
    mu, _ = model.encode(x, y)
    return model.decode(mu, y)


def cell_weights(kind: str, mcfg: Any, data: str | os.PathLike[str], ds: SurfaceDataset) -> np.ndarray | None:
    """Per-cell weights (N, R, K) of a (C)VAE's grid: 1 inside each day's quoted range, the model's
    ``extrapolated_weight`` outside it (:func:`volfast.models.data.quoted_mask`); None for PCA, for the
    generator's true surfaces (no SVI tables: every cell is data) and with ``extrapolated_weight == 1``."""
    w_out = float(getattr(mcfg, "extrapolated_weight", 1.0))
    if kind == "pca" or w_out >= 1.0:
        return None
    q = quoted_mask(data, ds, grid_of(kind, mcfg))
    return None if q is None else np.where(q, 1.0, w_out)


def encode_dataset(
    kind: str, model: Any, ds: SurfaceDataset, rows: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Latent means (and log-variances, None for PCA) of rows of ``ds``: (M, L). ``weights``: the
    dataset's :func:`cell_weights` (all rows), for the (C)VAEs' refinement."""
    dev = next(iter(model.buffers())).device
    x, y = _grid_xy(kind, model.config, ds, rows, dev)
    with torch.no_grad():
        if weights is not None and kind != "pca":
            mu, logvar = model.encode(x, y, weight=_tensor(weights[rows], dev))
        else:
            mu, logvar = model.encode(x, y)
    return mu.cpu().double().numpy(), None if logvar is None else logvar.cpu().double().numpy()


# --------------------------------------------------------------------------------------------- runner
def _write_json(path: Path, obj: Any) -> None:
    from volfast.io.output import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def data_inputs(data: str | os.PathLike[str], *, prefix: str = "data/") -> list[tuple[str, Path]]:
    """The files a model trained on ``data`` depends on, as ``(name, path)`` pairs for the freshness rule: a
    build's grids and day manifests (whose validity and output hashes decide which days are used), or a
    synth folder's config and true surfaces."""
    from volfast.io.freshness import tree_inputs

    pats = ["synth-config.json", "truth/**/*.parquet", "*.dbn*", "grids/**/*.parquet"]
    pats.append("days/*/_manifest.json")
    if Path(data).name == "grids":  # the grids folder itself
        pats = ["**/*.parquet"]
    return tree_inputs(data, pats, prefix=prefix)


def train_settings(
    kind: str,
    *,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    encoder: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The full resolved settings of a ``volfast train`` run (what its manifest records and the freshness
    rule compares): kind, every model and train setting, the search grid and, for lstm, the encoder folder."""
    mcfg, tcfg, search = load_config(kind, config_path, overrides)
    d: dict[str, Any] = {
        "kind": kind,
        "model": dataclasses.asdict(mcfg),
        "train": dataclasses.asdict(tcfg),
        "search": search,
    }
    if encoder is not None:
        d["encoder"] = str(Path(encoder).resolve())
    return d


def train_stage(
    kind: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    encoder: str | os.PathLike[str] | None = None,
    force: bool = False,
    log: Any = None,
) -> Any:
    """:func:`run_train` under the one freshness rule (:func:`volfast.io.freshness.run_stage`): the run in
    ``OUT/<kind>/`` is reused only when its manifest records the same full settings
    (:func:`train_settings`), code identity and input contents (the dataset's files, :func:`data_inputs`,
    and for lstm the encoder's model files); otherwise it is retrained and the manifest says why.

    Returns a :class:`volfast.io.freshness.StageRun` (``reused``, ``reason``, ``folder``)."""
    from volfast.io.freshness import run_stage, tree_inputs

    say = log or (lambda s: None)
    folder = Path(out) / kind
    enc_dir = _find_encoder(Path(out), encoder).resolve() if kind == "lstm" else None
    settings = train_settings(kind, config_path=config_path, overrides=overrides, encoder=enc_dir)
    settings["data"] = str(Path(data).resolve())  # recorded in config.json, which evaluate reads
    inputs = data_inputs(data)
    if enc_dir is not None:
        inputs += tree_inputs(enc_dir, [MODEL_FILE, META_FILE, "config.json"], prefix="encoder/")
    res = run_stage(
        folder,
        stage=f"train {kind}",
        config=settings,
        inputs=inputs,
        outputs=[MODEL_FILE, META_FILE, "config.json", "history.json"],
        run=lambda: _run_train(kind, data, out, config_path, overrides, enc_dir, say),
        force=force,
    )
    if res.reused:
        say(f"{kind}: reused {folder} (up to date)")
    else:
        say(f"{kind}: trained because {res.reason}")
    return res


def run_train(kind: str, data: str | os.PathLike[str], out: str | os.PathLike[str], **kw: Any) -> Path:
    """Train one model kind and write ``OUT/<kind>/``; returns that folder. ``lstm`` takes its latents from
    ``encoder`` (a trained run folder; default: the first of OUT/cvae, OUT/vae, OUT/cvae-conv, OUT/pca).

    Takes the keywords of :func:`train_stage` (``config_path``, ``overrides``, ``encoder``, ``force``,
    ``log``): an earlier run in that folder is reused when its settings, code and inputs all match."""
    return Path(train_stage(kind, data, out, **kw).folder)


def _run_train(
    kind: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config_path: str | os.PathLike[str] | None,
    overrides: Sequence[str],
    encoder: Path | None,
    say: Any,
) -> Path:
    mcfg, tcfg, search = load_config(kind, config_path, overrides)
    threads_before = torch.get_num_threads()
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    try:
        return _train_one(kind, mcfg, tcfg, search, data, Path(out), encoder, say)
    finally:
        torch.set_num_threads(threads_before)  # no global side effect outlives the call


def _train_one(
    kind: str,
    mcfg: Any,
    tcfg: TrainConfig,
    search: dict[str, list[Any]],
    data: str | os.PathLike[str],
    out: Path,
    encoder: Path | None,
    say: Any,
) -> Path:
    folder = out / kind
    if kind == "lstm":
        return _run_train_lstm(mcfg, tcfg, data, out, folder, encoder, say)
    ds = open_data(data)
    grid = grid_of(kind, mcfg)
    ok = usable(ds, grid)
    if ok.sum() < 4:
        raise DatasetError(f"{data}: {int(ok.sum())} complete {grid} days out of {len(ds)}; need at least 4")
    split = split_dates(ds.dates, test_fraction=tcfg.test_fraction, val_fraction=tcfg.val_fraction)
    m_tr, m_va, m_te = split.masks(ds.dates)
    tr, va = m_tr & ok, m_va & ok
    if tr.sum() < 2 or va.sum() < 1:
        raise DatasetError(
            f"{data}: {int(tr.sum())} complete training / {int(va.sum())} validation days; "
            "too few (missing or NaN grids are dropped)"
        )
    mcfg = _with_shape(kind, mcfg, ds)
    t0 = time.perf_counter()
    cv: dict[str, Any] | None = None
    if search:
        rows = np.flatnonzero((m_tr | m_va) & ok)
        keys = list(search)
        cands = [
            dataclasses.replace(mcfg, **{k.split(".", 1)[1]: v for k, v in zip(keys, vals, strict=True)})
            for vals in itertools.product(*(search[k] for k in keys))
        ]
        best, results = select(
            cands,
            lambda c, a, b: _cv_score(kind, ds, c, tcfg, rows, a, b),
            rows.size,
            tcfg.folds,
            min_block=max(2, *(getattr(c, "latent", 1) + 1 for c in cands)),
        )
        cv = {
            "candidates": [dataclasses.asdict(c) for c in cands],
            "results": [dataclasses.asdict(r) for r in results],
            "chosen": dataclasses.asdict(best),
        }
        mcfg = best
        say(f"{kind}: walk-forward search chose {dataclasses.asdict(best)}")
    weights = cell_weights(kind, mcfg, data, ds)
    if weights is not None:
        say(
            f"{kind}: {100 * float((weights == 1).mean()):.0f}% of the grid cells are quoted; the rest weigh "
            f"{mcfg.extrapolated_weight}"
        )
    start: dict[str, torch.Tensor] = {}
    model, history = train_surface(kind, ds, mcfg, tcfg, tr, va, weights, start if kind != "pca" else None)
    seconds = time.perf_counter() - t0
    save_model(folder, kind, model)
    if start:  # the untrained start (PCA in eSSVI parameter space), for `volfast evaluate`'s gain column
        from volfast.io.output import atomic_path

        with atomic_path(folder / START_FILE) as tmp:
            torch.save(start, tmp)
    resolved = {
        "kind": kind,
        "model": dataclasses.asdict(mcfg),
        "train": dataclasses.asdict(tcfg),
        "data": str(Path(data).resolve()),
        "split": split.to_dict(),
        "counts": {
            "days": len(ds),
            "dropped_incomplete": int((~ok).sum()),
            "train": int(tr.sum()),
            "val": int(va.sum()),
            "test": int((m_te & ok).sum()),
        },
        "epochs_run": len(history),
        "train_seconds": seconds,
        "device": str(_device(tcfg)),
        "threads": torch.get_num_threads(),
        "search": cv,
    }
    _write_json(folder / "config.json", resolved)
    _write_json(folder / "history.json", history)
    say(f"{kind}: trained in {seconds:.1f} s ({len(history)} epochs) -> {folder}")
    return folder


def _find_encoder(out: Path, encoder: str | os.PathLike[str] | None) -> Path:
    if encoder is not None:
        return Path(encoder)
    for k in ("cvae", "vae", "cvae-conv", "pca"):
        if (out / k / "model.json").is_file():
            return out / k
    raise ModelConfigError(
        f"{out}: no trained encoder run (cvae, vae, cvae-conv or pca) to take latents "
        "from; train one first or pass --encoder"
    )


def _load_run_config(folder: Path) -> dict[str, Any]:
    p = folder / "config.json"
    try:
        cfg: dict[str, Any] = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{p}: missing; {folder} is not a `volfast train` run") from None
    return cfg


def latent_sequence(
    enc_dir: Path, data: str | os.PathLike[str] | SurfaceDataset | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Latent means of every complete day of the encoder run's dataset (or ``data``: a path or a dataset
    already read), with the encoder's split: what the LSTM trains and is evaluated on."""
    ecfg = _load_run_config(enc_dir)
    kind, enc = load_model(enc_dir, map_location=device)
    ds = data if isinstance(data, SurfaceDataset) else open_data(data or ecfg["data"])
    grid = grid_of(kind, enc.config)
    ok = usable(ds, grid)
    rows = np.flatnonzero(ok)
    path = None if isinstance(data, SurfaceDataset) else (data or ecfg["data"])
    weights = cell_weights(kind, enc.config, path, ds) if path is not None else None
    mu, _ = encode_dataset(kind, enc, ds, rows, weights)
    z = np.full((len(ds), mu.shape[1]), np.nan)
    z[rows] = mu
    split = Split(**ecfg["split"])
    return {"kind": kind, "encoder": enc, "ds": ds, "z": z, "ok": ok, "split": split, "grid": grid}


def _run_train_lstm(
    mcfg: LSTMConfig,
    tcfg: TrainConfig,
    data: str | os.PathLike[str],
    out: Path,
    folder: Path,
    encoder: str | os.PathLike[str] | None,
    say: Any,
) -> Path:
    enc_dir = _find_encoder(out, encoder).resolve()
    seq = latent_sequence(enc_dir, data, device=str(_device(tcfg)))
    z, ok, ds, split = seq["z"], seq["ok"], seq["ds"], seq["split"]
    mcfg = dataclasses.replace(mcfg, latent=z.shape[1])
    seg = sequence_breaks(ds.dates, ok, max_gap_days=mcfg.max_gap_days)
    zf = np.nan_to_num(z)
    idx, win = make_windows(zf, seg, mcfg.window)
    m_tr, m_va, _ = split.masks(ds.dates)
    tr, va = m_tr[idx], m_va[idx]
    if tr.sum() < 2 or va.sum() < 1:
        raise DatasetError(
            f"lstm: {int(tr.sum())} training / {int(va.sum())} validation windows of "
            f"{mcfg.window} consecutive complete days; too few (shorten model.window)"
        )
    dev = _device(tcfg)
    t0 = time.perf_counter()
    model, history, chosen = fit_lstm_folds(mcfg, win[tr | va], zf[idx[tr | va]], tcfg, dev)
    seconds = time.perf_counter() - t0
    save_model(folder, "lstm", model, encoder=str(enc_dir))
    resolved = {
        "kind": "lstm",
        "model": dataclasses.asdict(mcfg),
        "train": dataclasses.asdict(tcfg),
        "data": str(Path(data).resolve()),
        "encoder": str(enc_dir),
        "split": split.to_dict(),
        "counts": {"windows_train": int(tr.sum()), "windows_val": int(va.sum())},
        "epochs_run": len(history),
        "epoch_selection": chosen,
        "train_seconds": seconds,
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }
    _write_json(folder / "config.json", resolved)
    _write_json(folder / "history.json", history)
    say(f"lstm: trained in {seconds:.1f} s ({len(history)} epochs) on latents of {enc_dir} -> {folder}")
    return folder


def fit_lstm_folds(
    mcfg: LSTMConfig, win: np.ndarray, target: np.ndarray, tcfg: TrainConfig, dev: torch.device
) -> tuple[Any, list[dict[str, float]], dict[str, Any]]:
    """Train the LSTM on the training period's windows ``win`` (M, T, L) and next-day latents ``target``
    (M, L), time-ordered, with its epoch count chosen on walk-forward validation folds.

    The windows are cut into ``tcfg.folds`` expanding-window folds (fewer when there are too few windows;
    :func:`volfast.models.walkforward.expanding_folds`). On each, a fresh LSTM (zero head: persistence at
    epoch 0) trains ``tcfg.epochs`` epochs on the fold's past and records its validation MSE after every
    epoch *relative to persistence on that fold*; the curves are combined with Donate et al.'s weights
    and the epoch count with the lowest combined score, 0 included, is chosen. A single validation slice
    picks an epoch by its noise (the old LSTM was 21% worse than persistence out of sample); averaging
    folds makes 0 epochs (persistence itself) the choice whenever training does not help on the past.
    The final LSTM is then trained on all windows for that many epochs (none: it is persistence).
    Returns (model, history, selection summary)."""
    from volfast.models.walkforward import donate_weights, expanding_folds

    m = win.shape[0]
    n_folds = max(1, min(tcfg.folds, m // 4 - 1))
    folds = expanding_folds(m, n_folds, min_block=min(2, m // (n_folds + 1)))
    curves = np.ones((len(folds), tcfg.epochs + 1))
    for f, (a, b) in enumerate(folds):
        torch.manual_seed(tcfg.seed)
        mdl = build_model("lstm", mcfg).to(dev)
        mdl.fit_stats(_tensor(target[a], dev))
        hist = fit_lstm(
            mdl,
            _tensor(win[a], dev),
            _tensor(target[a], dev),
            _tensor(win[b], dev),
            _tensor(target[b], dev),
            dataclasses.replace(tcfg, patience=tcfg.epochs + 1),  # the whole curve: folds are averaged
        )
        base = hist[0]["val"]  # epoch 0: persistence
        vals = np.array([h["val"] for h in hist])
        curves[f, : vals.size] = vals / max(base, 1e-300)
        curves[f, vals.size :] = curves[f, vals.size - 1]
    score = donate_weights(len(folds)) @ curves  # (epochs + 1,)
    best = int(np.argmin(score))
    torch.manual_seed(tcfg.seed)
    model = build_model("lstm", mcfg).to(dev)
    model.fit_stats(_tensor(target, dev))
    history: list[dict[str, float]] = [{"fold_val_relative": float(v)} for v in score]
    if best > 0:
        once = dataclasses.replace(tcfg, epochs=best)
        final = fit_lstm(model, _tensor(win, dev), _tensor(target, dev), None, None, once)
        history += [h | {"final": 1.0} for h in final]
    model.eval()
    chosen = {
        "folds": len(folds),
        "epochs": best,
        "fold_val_relative_to_persistence": float(score[best]),
        "fold_curves_at_choice": curves[:, best].tolist(),
    }
    return model, history, chosen


def fit_lstm(
    model: Any,
    w_tr: torch.Tensor,
    z_tr: torch.Tensor,
    w_va: torch.Tensor | None,
    z_va: torch.Tensor | None,
    tcfg: TrainConfig,
) -> list[dict[str, float]]:
    """One-step MSE in standardised latent units; early stopping on the validation windows (the first
    record is the untrained model, persistence). Without validation windows all ``tcfg.epochs`` run and
    the final weights are kept."""
    gen = torch.Generator(device="cpu").manual_seed(tcfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    stop = EarlyStopping(tcfg.patience)
    std = model.z_std
    history: list[dict[str, float]] = []
    if w_va is not None and z_va is not None:
        with torch.no_grad():  # epoch 0: the untrained model is persistence (zero head)
            val0 = float(((model(w_va) - z_va) / std).square().mean())
        history.append({"val": val0})
        stop.step(val0, model.state_dict())
    for _ in range(tcfg.epochs):
        model.train()
        perm = torch.randperm(w_tr.shape[0], generator=gen).to(w_tr.device)
        tot, n_b = 0.0, 0
        for s in range(0, perm.numel(), tcfg.batch_size):
            b = perm[s : s + tcfg.batch_size]
            loss = ((model(w_tr[b]) - z_tr[b]) / std).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            n_b += 1
        if w_va is None or z_va is None:
            history.append({"train": tot / max(n_b, 1)})
            continue
        model.eval()
        with torch.no_grad():
            val = float(((model(w_va) - z_va) / std).square().mean())
        history.append({"train": tot / max(n_b, 1), "val": val})
        if stop.step(val, model.state_dict()):
            break
    if w_va is not None and stop.best_state is not None:
        model.load_state_dict(stop.best_state)
    model.eval()
    return history
