"""Out-of-sample evaluation of a run folder: every trained model scored on its test period (the days after
its training period; never seen in training, early stopping or model choice), written side by side as
``metrics.json`` and ``metrics.md``.

Reconstruction models: RMSE in vol points (overall, ATM, wings), MSE, SSIM (torch, per-image data range of
the true grid; 7 x 7 window on the image grid, 3 x 3 on the 3 x 11 CVAE grid), latent statistics.
LSTM: one-step MSE in standardised latent units and in decoded vol space against persistence and per-latent
AR(1), with moving-block bootstrap confidence intervals on the improvement over persistence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volfast.models.data import grid_axis_k, open_data, sequence_breaks, usable
from volfast.models.io import META_FILE, load_model
from volfast.models.lstm import AR1, make_windows, persistence
from volfast.models.metrics import block_bootstrap_ci, latent_stats, rmse_table, ssim
from volfast.models.train import Split, _load_run_config, encode_dataset, grid_of, latent_sequence
from volfast.surface import SurfaceDataset

__all__ = ["evaluate_model", "evaluate_run", "metrics_markdown"]


def _decode(kind: str, model: Any, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    dev = next(iter(model.buffers())).device
    zt = torch.as_tensor(z, dtype=torch.float32, device=dev)
    yt = None if y is None else torch.as_tensor(y, dtype=torch.float32, device=dev)
    with torch.no_grad():
        return model.decode(zt, yt).cpu().double().numpy()


def _opener(cache: dict[str, SurfaceDataset] | None) -> Any:
    def get(path: str | os.PathLike[str]) -> SurfaceDataset:
        key = str(Path(path).resolve())
        if cache is None:
            return open_data(key)
        if key not in cache:
            cache[key] = open_data(key)
        return cache[key]

    return get


def evaluate_model(
    folder: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    cache: dict[str, SurfaceDataset] | None = None,
) -> dict[str, Any]:
    """Metrics of one trained model folder (``OUT/<kind>``) on its test period (and, for reference, on its
    training period). ``cache``: datasets already read, keyed by resolved path (filled as read)."""
    folder = Path(folder)
    rcfg = _load_run_config(folder)
    opener = _opener(cache)
    if rcfg["kind"] == "lstm":
        return _evaluate_lstm(folder, rcfg, opener(data or rcfg["data"]), device)
    kind, model = load_model(folder, map_location=device)
    ds = opener(data or rcfg["data"])
    grid = grid_of(kind, model.config)
    split = Split(**rcfg["split"])
    m_tr, _, m_te = split.masks(ds.dates)
    ok = usable(ds, grid)
    k = grid_axis_k(ds.config, grid)
    out: dict[str, Any] = {
        "kind": kind,
        "grid": grid,
        "latent": int(model.config.latent),
        "train_seconds": rcfg.get("train_seconds"),
        "epochs_run": rcfg.get("epochs_run"),
        "test_start": split.test_start,
        "test_end": split.test_end,
    }
    for name, m in (("test", m_te & ok), ("train", m_tr & ok)):
        rows = np.flatnonzero(m)
        if rows.size == 0:
            out[name] = {"days": 0}
            continue
        mu, logvar = encode_dataset(kind, model, ds, rows)
        y = ds.cvae_expiry_years[rows] if grid == "cvae" else None
        pred = _decode(kind, model, mu, y)
        true = ds.grid(grid)[rows]
        res: dict[str, Any] = {"days": int(rows.size), **rmse_table(pred, true, k)}
        rng = true.reshape(rows.size, -1).max(axis=1) - true.reshape(rows.size, -1).min(axis=1)
        win = 7 if min(true.shape[1:]) >= 7 else 3
        s = ssim(torch.as_tensor(pred), torch.as_tensor(true), data_range=torch.as_tensor(rng), win_size=win)
        res["ssim"] = float(s.mean())
        res["ssim_win"] = win
        res["min_vol_pred"] = float(pred.min())
        if name == "test":
            res["latent"] = latent_stats(mu, logvar)
        out[name] = res
    out["dropped_incomplete_test_days"] = int((m_te & ~ok).sum())
    return out


def _evaluate_lstm(folder: Path, rcfg: dict[str, Any], ds: SurfaceDataset, device: str) -> dict[str, Any]:
    _, lstm = load_model(folder, map_location=device)
    seq = latent_sequence(Path(rcfg["encoder"]), ds, device=device)
    z, ok, ds, split = seq["z"], seq["ok"], seq["ds"], seq["split"]
    cfg = lstm.config
    seg = sequence_breaks(ds.dates, ok, max_gap_days=cfg.max_gap_days)
    zf = np.nan_to_num(z)
    idx, win = make_windows(zf, seg, cfg.window)
    m_tr, m_va, m_te = split.masks(ds.dates)
    te = m_te[idx]
    fit = (m_tr | m_va)[idx]
    if te.sum() < 2:
        raise ValueError(f"{folder}: {int(te.sum())} test windows; too few to evaluate")
    # AR(1) on consecutive training-period pairs (windows of 1 never cross a break)
    i1, w1 = make_windows(zf, seg, 1)
    tr1 = (m_tr | m_va)[i1]
    ar = AR1.fit(w1[tr1, -1], zf[i1[tr1]])
    target = zf[idx[te]]
    w_te = win[te]
    dev = next(iter(lstm.buffers())).device
    with torch.no_grad():
        p_lstm = lstm(torch.as_tensor(w_te, dtype=torch.float32, device=dev)).cpu().double().numpy()
    preds = {"persistence": persistence(w_te), "ar1": ar.predict(w_te), "lstm": p_lstm}
    z_std = zf[ok & m_tr].std(axis=0)
    enc_kind, enc = seq["kind"], seq["encoder"]
    y = ds.cvae_expiry_years[idx[te]] if seq["grid"] == "cvae" else None
    true_grid = ds.grid(seq["grid"])[idx[te]]
    lat_err: dict[str, np.ndarray] = {}
    vol_err: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {
        "kind": "lstm",
        "encoder": enc_kind,
        "latent": int(cfg.latent),
        "window": int(cfg.window),
        "test_windows": int(te.sum()),
        "fit_windows": int(fit.sum()),
        "train_seconds": rcfg.get("train_seconds"),
        "epochs_run": rcfg.get("epochs_run"),
        "ar1_phi": ar.phi.tolist(),
    }
    for name, p in preds.items():
        lat_err[name] = (((p - target) / z_std) ** 2).mean(axis=1)
        vol_err[name] = ((_decode(enc_kind, enc, p, y) - true_grid) ** 2).reshape(len(p), -1).mean(axis=1)
        out[f"latent_mse_{name}"] = float(lat_err[name].mean())
        out[f"vol_mse_{name}"] = float(vol_err[name].mean())
        out[f"vol_rmse_{name}"] = float(np.sqrt(vol_err[name].mean()) * 100)
    for space, err in (("latent", lat_err), ("vol", vol_err)):
        for model_name in ("lstm", "ar1"):
            mean, lo, hi = block_bootstrap_ci(
                err["persistence"] - err[model_name], block=10, reps=2000, seed=0
            )
            base = float(err["persistence"].mean())
            out[f"{space}_improvement_{model_name}"] = {
                "mean": mean,
                "ci95": [lo, hi],
                "relative": mean / base if base > 0 else float("nan"),
                "beats_persistence": bool(lo > 0),
            }
    # multi-step rollout: 5-day horizon latent MSE vs persistence
    h = 5
    starts = [j for j, t in enumerate(idx) if m_te[t] and t + h - 1 < len(seg) and seg[t + h - 1] == seg[t]]
    if starts:
        ws = torch.as_tensor(win[starts], dtype=torch.float32, device=dev)
        roll = lstm.rollout(ws, h).cpu().double().numpy()[:, -1]
        tgt = zf[idx[starts] + h - 1]
        out["rollout5_latent_mse_lstm"] = float((((roll - tgt) / z_std) ** 2).mean())
        out["rollout5_latent_mse_persistence"] = float((((win[starts][:, -1] - tgt) / z_std) ** 2).mean())
    return out


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if np.isfinite(v) else "nan"
    return str(v)


def metrics_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side tables (reconstruction; forecasting) as Markdown."""
    lines = [
        "## Reconstruction, out of sample (test period)",
        "",
        "| model | grid | latent | test days | RMSE (vol pts) | ATM | wings | SSIM | train RMSE | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if r.get("kind") == "lstm" or "test" not in r:
            continue
        t, tr = r["test"], r.get("train", {})
        lines.append(
            f"| {name} | {r['grid']} | {r['latent']} | {t.get('days')} | {_fmt(t.get('rmse'))} | "
            f"{_fmt(t.get('rmse_atm'))} | {_fmt(t.get('rmse_wings'))} | {_fmt(t.get('ssim'), 4)} | "
            f"{_fmt(tr.get('rmse'))} | {_fmt(r.get('train_seconds'), 1)} |"
        )
    fc = [(n, r) for n, r in results.items() if r.get("kind") == "lstm"]
    if fc:
        lines += [
            "",
            "## One-step latent forecast, out of sample",
            "",
            "| model | encoder | windows | latent MSE (std units) | vol RMSE (vol pts) | "
            "improvement vs persistence, vol MSE [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in fc:
            for m in ("persistence", "ar1", "lstm"):
                imp = "-"
                if m != "persistence":
                    d = r[f"vol_improvement_{m}"]
                    imp = (
                        f"{d['relative'] * 100:+.2f}% [{d['ci95'][0]:.2e}, {d['ci95'][1]:.2e}]"
                        f"{' (beats)' if d['beats_persistence'] else ''}"
                    )
                lines.append(
                    f"| {name}:{m} | {r['encoder']} | {r['test_windows']} | "
                    f"{_fmt(r[f'latent_mse_{m}'], 4)} | {_fmt(r[f'vol_rmse_{m}'])} | {imp} |"
                )
    return "\n".join(lines) + "\n"


def evaluate_run(
    run: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """Evaluate every model folder under ``run`` (or ``run`` itself if it is one); writes
    ``RUN/metrics.json`` and ``RUN/metrics.md``. Returns the results keyed by folder name."""
    root = Path(run)
    if (root / META_FILE).is_file():
        folders = [root]
    else:
        folders = sorted(p.parent for p in root.glob(f"*/{META_FILE}"))
    if not folders:
        raise FileNotFoundError(f"{root}: no trained models (folders with {META_FILE}); run `volfast train`")
    order = {k: i for i, k in enumerate(["pca", "vae", "cvae", "cvae-conv", "lstm"])}
    folders.sort(key=lambda p: (order.get(p.name, 99), p.name))
    cache: dict[str, SurfaceDataset] = {}
    results = {f.name: evaluate_model(f, data=data, device=device, cache=cache) for f in folders}
    (root / "metrics.json").write_text(json.dumps(results, indent=2))
    (root / "metrics.md").write_text(metrics_markdown(results))
    return results
