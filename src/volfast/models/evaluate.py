"""Out-of-sample evaluation of a run folder: every trained model scored on its test period (the days after
its training period; never seen in training, early stopping or model choice), written side by side as
``metrics.json`` and ``metrics.md``.

Reconstruction models: RMSE in vol points (overall, ATM, wings), MSE, SSIM (torch, per-image data range of
the true grid; 7 x 7 window on the image grid, 3 x 3 on the 3 x 11 CVAE grid), latent statistics. On built
surfaces (a ``volfast build`` folder with ``svi/`` tables) also the RMSE over each day's quoted cells only
(:func:`volfast.models.data.quoted_mask`; sqrt of the mean over test days of the mean squared error over
that day's quoted cells), with PCA on the same cells; and, where training saved it, the untrained start's
test RMSE beside the trained model's (what training added).
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

from volfast.errors import VolfastError
from volfast.models.arbitrage import arbitrage_counts
from volfast.models.data import grid_axis_k, open_data, quoted_mask, sequence_breaks, usable
from volfast.models.io import META_FILE, load_model
from volfast.models.lstm import AR1, make_windows, persistence
from volfast.models.metrics import block_bootstrap_ci, latent_stats, rmse_ci, rmse_ratio_ci, rmse_table, ssim
from volfast.models.pca import PCA, PCAConfig
from volfast.models.train import (
    START_FILE,
    Split,
    _load_run_config,
    cell_weights,
    encode_dataset,
    grid_of,
    latent_sequence,
)
from volfast.surface import SurfaceDataset

__all__ = ["EvaluateError", "ExportError", "evaluate_model", "evaluate_run", "export_run", "metrics_markdown"]


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
    m_tr, m_va, m_te = split.masks(ds.dates)
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
    tenors_of = _tenor_axis(ds, grid)
    quoted = quoted_mask(data or rcfg["data"], ds, grid)
    weights = cell_weights(kind, model.config, data or rcfg["data"], ds)
    for name, m in (("test", m_te & ok), ("train", m_tr & ok)):
        rows = np.flatnonzero(m)
        if rows.size == 0:
            out[name] = {"days": 0}
            continue
        mu, logvar = encode_dataset(kind, model, ds, rows, weights)
        y = ds.cvae_expiry_years[rows] if grid == "cvae" else None
        pred = _decode(kind, model, mu, y)
        true = ds.grid(grid)[rows]
        res: dict[str, Any] = {"days": int(rows.size), **rmse_table(pred, true, k)}
        day_mse = ((pred - true) ** 2).reshape(rows.size, -1).mean(axis=1)
        res["rmse"], lo, hi = rmse_ci(day_mse)
        res["rmse_ci95"] = [lo, hi]
        qmask = None if quoted is None else quoted[rows]
        if qmask is not None:
            res["quoted_fraction"] = float(qmask.mean())
            q_mse, q_days = _quoted_day_mse(pred, true, qmask)
            if q_days.any():
                res["rmse_quoted"], lo, hi = rmse_ci(q_mse[q_days])
                res["rmse_quoted_ci95"] = [lo, hi]
        rng = true.reshape(rows.size, -1).max(axis=1) - true.reshape(rows.size, -1).min(axis=1)
        win = 7 if min(true.shape[1:]) >= 7 else 3
        s = ssim(torch.as_tensor(pred), torch.as_tensor(true), data_range=torch.as_tensor(rng), win_size=win)
        res["ssim"] = float(s.mean())
        res["ssim_win"] = win
        res["min_vol_pred"] = float(pred.min())
        res["arbitrage"] = arbitrage_counts(pred, k, tenors_of(rows))
        if name == "test":
            res["latent"] = latent_stats(mu, logvar)
            start = _start_scores(folder, kind, model, ds, rows, weights, true, qmask, device)
            if start:
                res["start"] = start
            res["arbitrage_random_latents"] = _random_latent_arbitrage(kind, model, mu, y, k, tenors_of(rows))
            if kind != "pca":  # fitted where the model was: its training data's train + validation days
                ds_fit = opener(rcfg["data"])
                f_tr, f_va, _ = split.masks(ds_fit.dates)
                fit_rows = np.flatnonzero((f_tr | f_va) & usable(ds_fit, grid))
                res["pca_same_latent"] = _pca_baseline(
                    ds_fit, fit_rows, ds, rows, grid, int(model.config.latent), day_mse, qmask, pred
                )
        out[name] = res
    out["dropped_incomplete_test_days"] = int((m_te & ~ok).sum())
    return out


def _start_scores(
    folder: Path,
    kind: str,
    model: Any,
    ds: SurfaceDataset,
    rows: np.ndarray,
    weights: np.ndarray | None,
    true: np.ndarray,
    qmask: np.ndarray | None,
    device: str,
) -> dict[str, Any]:
    """The untrained start's test RMSE (vol points; over the quoted cells too when there is a mask), from
    ``START_FILE`` beside the model: what training added (empty when the file is absent)."""
    path = folder / START_FILE
    if not path.is_file():
        return {}
    import copy

    state = torch.load(path, map_location=device, weights_only=True)
    start = copy.deepcopy(model)
    start.load_state_dict(state, strict=True)
    start.eval()
    mu, _ = encode_dataset(kind, start, ds, rows, weights)
    y = ds.cvae_expiry_years[rows] if grid_of(kind, start.config) == "cvae" else None
    pred = _decode(kind, start, mu, y)
    day = ((pred - true) ** 2).reshape(rows.size, -1).mean(axis=1)
    out: dict[str, Any] = {"rmse": float(np.sqrt(day.mean()) * 100)}
    if qmask is not None:
        q, days = _quoted_day_mse(pred, true, qmask)
        if days.any():
            out["rmse_quoted"] = float(np.sqrt(q[days].mean()) * 100)
    return out


def _quoted_day_mse(pred: np.ndarray, true: np.ndarray, qmask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-day MSE over the day's quoted cells only (vol^2) and which days have any quoted cell."""
    n = pred.shape[0]
    w = qmask.reshape(n, -1).astype(np.float64)
    cnt = w.sum(axis=1)
    sq = ((pred - true) ** 2).reshape(n, -1)
    return (sq * w).sum(axis=1) / np.maximum(cnt, 1.0), cnt > 0


def _tenor_axis(ds: SurfaceDataset, grid: str) -> Any:
    """Rows -> the tenors (years) of each day's grid rows: fixed image tenors or the day's CVAE expiries."""
    if grid == "image":
        t = np.asarray(ds.config.image_tenor_years, dtype=np.float64)
        return lambda rows: np.broadcast_to(t, (len(rows), t.size))
    return lambda rows: ds.cvae_expiry_years[rows]


def _random_latent_arbitrage(
    kind: str,
    model: Any,
    mu: np.ndarray,
    y: np.ndarray | None,
    k: np.ndarray,
    tenors: np.ndarray,
    n: int = 256,
) -> dict[str, Any]:
    """Arbitrage counts of surfaces decoded from latents far outside the test latents' range: their mean
    plus 4 standard deviations times a standard normal draw (seed 0), at the test days' conditions."""
    rng = np.random.default_rng(0)
    sd = mu.std(axis=0) if mu.shape[0] > 1 else np.ones(mu.shape[1])
    z = mu.mean(axis=0) + 4.0 * np.maximum(sd, 1e-6) * rng.standard_normal((n, mu.shape[1]))
    pick = np.arange(n) % mu.shape[0]
    yy = None if y is None else y[pick]
    return arbitrage_counts(_decode(kind, model, z, yy), k, tenors[pick])


def _pca_baseline(
    ds_fit: SurfaceDataset,
    fit_rows: np.ndarray,
    ds: SurfaceDataset,
    test_rows: np.ndarray,
    grid: str,
    latent: int,
    day_mse: np.ndarray,
    qmask: np.ndarray | None = None,
    model_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """PCA with the same latent size on the same grid, fitted on the model's training period (train and
    validation days, as `volfast train pca` does), scored on the same test days; the model's RMSE ratio
    to it with a paired block-bootstrap interval. With ``qmask`` (the test days' quoted cells, built
    surfaces) and the model's decoded test surfaces ``model_pred``, the same again over the quoted cells
    only (:func:`_quoted_day_mse`; days without a quoted cell left out of both)."""
    x = ds.grid(grid)
    if fit_rows.size <= latent:
        return {"days": 0}
    pca = (
        PCA(PCAConfig(latent=latent, grid=grid, shape=tuple(x.shape[1:])))
        .double()
        .fit(torch.as_tensor(ds_fit.grid(grid)[fit_rows], dtype=torch.float64))
    )
    with torch.no_grad():
        pred = pca(torch.as_tensor(x[test_rows], dtype=torch.float64)).numpy()
    pca_mse = ((pred - x[test_rows]) ** 2).reshape(test_rows.size, -1).mean(axis=1)
    rmse, lo, hi = rmse_ci(pca_mse)
    ratio, rlo, rhi = rmse_ratio_ci(day_mse, pca_mse)
    out: dict[str, Any] = {"rmse": rmse, "rmse_ci95": [lo, hi], "ratio": ratio, "ratio_ci95": [rlo, rhi]}
    if qmask is not None and model_pred is not None:
        p_q, days = _quoted_day_mse(pred, x[test_rows], qmask)
        m_q, _ = _quoted_day_mse(model_pred, x[test_rows], qmask)
        if days.any():
            out["rmse_quoted"], lo, hi = rmse_ci(p_q[days])
            out["rmse_quoted_ci95"] = [lo, hi]
            ratio, rlo, rhi = rmse_ratio_ci(m_q[days], p_q[days])
            out["ratio_quoted"], out["ratio_quoted_ci95"] = ratio, [rlo, rhi]
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
        raise EvaluateError(f"{folder}: {int(te.sum())} test windows; too few to evaluate")
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
    k = grid_axis_k(ds.config, seq["grid"])
    tenors = _tenor_axis(ds, seq["grid"])(idx[te])
    for name, p in preds.items():
        dec = _decode(enc_kind, enc, p, y)
        lat_err[name] = (((p - target) / z_std) ** 2).mean(axis=1)
        vol_err[name] = ((dec - true_grid) ** 2).reshape(len(p), -1).mean(axis=1)
        out[f"latent_mse_{name}"] = float(lat_err[name].mean())
        out[f"vol_mse_{name}"] = float(vol_err[name].mean())
        out[f"vol_rmse_{name}"], lo, hi = rmse_ci(vol_err[name])
        out[f"vol_rmse_{name}_ci95"] = [lo, hi]
        out[f"arbitrage_{name}"] = arbitrage_counts(dec, k, tenors)
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


def _ci(v: float | None, ci: list[float] | None, nd: int = 3) -> str:
    if v is None:
        return "-"
    if not ci:
        return _fmt(v, nd)
    return f"{_fmt(v, nd)} [{_fmt(ci[0], nd)}, {_fmt(ci[1], nd)}]"


def _arb_row(label: str, a: dict[str, Any] | None) -> str:
    if not a:
        return f"| {label} | - | - | - | - | - |"
    return (
        f"| {label} | {a['surfaces']} | {a['monotone']} | {a['butterfly']} | {a['calendar']} | "
        f"{a['surfaces_with_violation']} |"
    )


def metrics_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The side-by-side tables (reconstruction with its PCA baseline; static arbitrage of every decoded
    surface; forecasting against persistence and AR(1)) as Markdown, vol points with 95% intervals."""
    lines = [
        "## Reconstruction, out of sample (test period)",
        "",
        "RMSE in vol points with moving-block bootstrap 95% intervals over test days; PCA at the same grid "
        "and latent size fitted on the same training days.",
        "",
        "| model | grid | latent | test days | RMSE (vol pts) | PCA, same latent | ratio to PCA | ATM "
        "| wings | SSIM | train RMSE | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    recon = [(n, r) for n, r in results.items() if r.get("kind") != "lstm" and "test" in r]
    quoted = [(n, r) for n, r in recon if "rmse_quoted" in r["test"]]
    for name, r in recon:
        t, tr = r["test"], r.get("train", {})
        base = t.get("pca_same_latent") or {}
        has = base.get("rmse") is not None
        pca_cell = _ci(base.get("rmse"), base.get("rmse_ci95")) if has else "(itself)"
        ratio_cell = _ci(base.get("ratio"), base.get("ratio_ci95"), 2) if has else "1"
        lines.append(
            f"| {name} | {r['grid']} | {r['latent']} | {t.get('days')} | "
            f"{_ci(t.get('rmse'), t.get('rmse_ci95'))} | "
            f"{pca_cell} | {ratio_cell} | {_fmt(t.get('rmse_atm'))} | {_fmt(t.get('rmse_wings'))} | "
            f"{_fmt(t.get('ssim'), 4)} | {_fmt(tr.get('rmse'))} | {_fmt(r.get('train_seconds'), 1)} |"
        )
    if quoted:
        lines += [
            "",
            "## Reconstruction over the quoted range (built surfaces)",
            "",
            "The same test days, each scored only on its grid cells inside the quoted range: between two of "
            "the day's surface expiries and inside both expiries' quoted ln(K/F) (the rest of a built grid "
            "is the build's extrapolation: raw-SVI wings, flat forward variance). RMSE = sqrt(mean over "
            "days of the mean squared error over that day's quoted cells); PCA on the same cells.",
            "",
            "| model | quoted cells | RMSE (vol pts) | PCA, same latent | ratio to PCA |",
            "|---|---|---|---|---|",
        ]
        for name, r in quoted:
            t = r["test"]
            base = t.get("pca_same_latent") or {}
            has = base.get("rmse_quoted") is not None
            lines.append(
                f"| {name} | {t['quoted_fraction'] * 100:.0f}% | "
                f"{_ci(t['rmse_quoted'], t.get('rmse_quoted_ci95'))} | "
                f"{_ci(base.get('rmse_quoted'), base.get('rmse_quoted_ci95')) if has else '(itself)'} | "
                f"{_ci(base.get('ratio_quoted'), base.get('ratio_quoted_ci95'), 2) if has else '1'} |"
            )
    started = [(n, r) for n, r in recon if r["test"].get("start")]
    if started:
        lines += [
            "",
            "## What training added",
            "",
            "Test RMSE (vol points) of each model's untrained start (PCA in eSSVI parameter space, fitted on "
            "the same days, the same refined encoder) against the trained model.",
            "",
            "| model | start | trained | start, quoted range | trained, quoted range |",
            "|---|---|---|---|---|",
        ]
        for name, r in started:
            t, st = r["test"], r["test"]["start"]
            lines.append(
                f"| {name} | {_fmt(st.get('rmse'))} | {_fmt(t.get('rmse'))} | "
                f"{_fmt(st.get('rmse_quoted'))} | {_fmt(t.get('rmse_quoted'))} |"
            )
    fc = [(n, r) for n, r in results.items() if r.get("kind") == "lstm"]
    lines += [
        "",
        "## Static arbitrage of decoded surfaces",
        "",
        "Violations on each model's grid: Black call prices rising in strike, negative divided second "
        "differences in strike (butterfly), total variance falling in tenor (calendar); tolerance 1e-9 of "
        "the forward. Random latents: 256 draws at the test latents' mean plus 4 standard deviations.",
        "",
        "| decoded surfaces | surfaces | calls rising | butterfly | calendar | surfaces with any |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in recon:
        t = r["test"]
        lines.append(_arb_row(f"{name}: test reconstructions", t.get("arbitrage")))
        lines.append(_arb_row(f"{name}: random latents", t.get("arbitrage_random_latents")))
    for name, r in fc:
        for m in ("persistence", "ar1", "lstm"):
            lines.append(_arb_row(f"{name}:{m} forecasts ({r['encoder']})", r.get(f"arbitrage_{m}")))
    if fc:
        lines += [
            "",
            "## One-step latent forecast, out of sample",
            "",
            "| model | encoder | windows | latent MSE (std units) | vol RMSE (vol pts) [95% CI] | "
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
                    f"{_fmt(r[f'latent_mse_{m}'], 4)} | "
                    f"{_ci(r[f'vol_rmse_{m}'], r.get(f'vol_rmse_{m}_ci95'))} | {imp} |"
                )
    return "\n".join(lines) + "\n"


def _model_folders(root: Path) -> list[Path]:
    if (root / META_FILE).is_file():
        folders = [root]
    else:
        folders = sorted(p.parent for p in root.glob(f"*/{META_FILE}"))
    if not folders:
        raise EvaluateError(f"{root}: no trained models (folders with {META_FILE}); run `volfast train`")
    order = {k: i for i, k in enumerate(["pca", "vae", "cvae", "cvae-conv", "lstm"])}
    folders.sort(key=lambda p: (order.get(p.name, 99), p.name))
    return folders


class EvaluateError(VolfastError, FileNotFoundError):
    """A run folder with nothing to evaluate (names it and the command to run)."""


def evaluate_run(
    run: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """Evaluate every model folder under ``run`` (or ``run`` itself if it is one); writes
    ``RUN/metrics.json`` and ``RUN/metrics.md``. Returns the results keyed by folder name."""
    root = Path(run)
    folders = _model_folders(root)
    cache: dict[str, SurfaceDataset] = {}
    results = {f.name: evaluate_model(f, data=data, device=device, cache=cache) for f in folders}
    from volfast.io.output import atomic_write_bytes

    atomic_write_bytes(root / "metrics.json", json.dumps(results, indent=2).encode())
    atomic_write_bytes(root / "metrics.md", metrics_markdown(results).encode())
    return results


class ExportError(VolfastError, OSError):
    """The export folder cannot be written (names it and why)."""


def _decoded_test(
    folder: Path, data: str | os.PathLike[str] | None, device: str, cache: dict[str, SurfaceDataset]
) -> dict[str, Any]:
    """One model folder's decoded test surfaces: dates (M,), tenors (M, R), k (K,), model vols and the
    built (market) vols, (M, R, K). LSTM: its one-step forecasts of the test days, on its encoder's grid."""
    rcfg = _load_run_config(folder)
    ds = _opener(cache)(data or rcfg["data"])
    if rcfg["kind"] == "lstm":
        _, lstm = load_model(folder, map_location=device)
        seq = latent_sequence(Path(rcfg["encoder"]), ds, device=device)
        z, ok, split = seq["z"], seq["ok"], seq["split"]
        seg = sequence_breaks(ds.dates, ok, max_gap_days=lstm.config.max_gap_days)
        idx, win = make_windows(np.nan_to_num(z), seg, lstm.config.window)
        rows = idx[split.masks(ds.dates)[2][idx]]
        w_te = win[split.masks(ds.dates)[2][idx]]
        dev = next(iter(lstm.buffers())).device
        with torch.no_grad():
            p = lstm(torch.as_tensor(w_te, dtype=torch.float32, device=dev)).cpu().double().numpy()
        grid, kind, model = seq["grid"], seq["kind"], seq["encoder"]
        y = ds.cvae_expiry_years[rows] if grid == "cvae" else None
        vols = _decode(kind, model, p, y) if rows.size else np.empty((0, *ds.grid(grid).shape[1:]))
    else:
        kind, model = load_model(folder, map_location=device)
        grid = grid_of(kind, model.config)
        split = Split(**rcfg["split"])
        rows = np.flatnonzero(split.masks(ds.dates)[2] & usable(ds, grid))
        y = ds.cvae_expiry_years[rows] if grid == "cvae" else None
        vols = np.empty((0, *ds.grid(grid).shape[1:]))
        if rows.size:
            wts = cell_weights(kind, model.config, data or rcfg["data"], ds)
            mu, _ = encode_dataset(kind, model, ds, rows, wts)
            vols = _decode(kind, model, mu, y)
    return {
        "dates": ds.dates[rows].astype("datetime64[D]"),
        "tenors": np.asarray(_tenor_axis(ds, grid)(rows), dtype=np.float64),
        "k": grid_axis_k(ds.config, grid),
        "vols": vols,
        "market": ds.grid(grid)[rows],
    }


def _long_rows(
    name: str, dates: np.ndarray, tenors: np.ndarray, k: np.ndarray, vols: np.ndarray
) -> dict[str, Any]:
    m, r_rows, n_k = vols.shape
    w = vols.astype(np.float64) ** 2 * tenors[..., None]
    return {
        "model": np.full(m * r_rows * n_k, name, dtype=object),
        "date": np.repeat(dates, r_rows * n_k),
        "tenor_years": np.repeat(tenors.reshape(-1), n_k),
        "log_moneyness": np.tile(np.asarray(k, dtype=np.float64), m * r_rows),
        "total_variance": w.reshape(-1),
    }


def export_run(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> Path:
    """Every model's decoded test surfaces as long rows (model, date, tenor_years, log_moneyness,
    total_variance) in ``OUT/surfaces.parquet`` (zstd), plus rows with model ``"market"`` holding the built
    surfaces on the same grid points (each (date, tenor, k) once). Total variance is vol^2 x tenor (years,
    ACT/365); log-moneyness is ln(K/F). Returns the file written."""
    import pyarrow as pa

    folders = _model_folders(Path(run))
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder; --export needs a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot create the export folder ({exc.strerror or exc})") from None
    cache: dict[str, SurfaceDataset] = {}
    parts: list[dict[str, Any]] = []
    market: list[dict[str, Any]] = []
    for f in folders:
        d = _decoded_test(f, data, device, cache)
        if d["vols"].shape[0] == 0:
            continue
        parts.append(_long_rows(f.name, d["dates"], d["tenors"], d["k"], d["vols"]))
        market.append(_long_rows("market", d["dates"], d["tenors"], d["k"], d["market"]))
    cols = ("model", "date", "tenor_years", "log_moneyness", "total_variance")
    if market:
        mk = {c: np.concatenate([p[c] for p in market]) for c in cols}
        day = mk["date"].astype("datetime64[D]").astype(np.int64)
        key = np.rec.fromarrays([day, mk["tenor_years"], mk["log_moneyness"]])
        _, first = np.unique(key, return_index=True)
        parts.append({c: v[np.sort(first)] for c, v in mk.items()})

    def col(name: str) -> np.ndarray:
        return np.concatenate([p[name] for p in parts]) if parts else np.array([])

    table = pa.table(
        {
            "model": pa.array(col("model"), pa.string()),
            "date": pa.array(col("date").astype("datetime64[D]"), pa.date32()),
            "tenor_years": pa.array(col("tenor_years"), pa.float64()),
            "log_moneyness": pa.array(col("log_moneyness"), pa.float64()),
            "total_variance": pa.array(col("total_variance"), pa.float64()),
        }
    )
    path = out_dir / "surfaces.parquet"
    from volfast.io.output import write_parquet_atomic

    write_parquet_atomic(table, path)
    return path
