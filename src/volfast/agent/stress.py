"""Stress tests in latent space: a directed shock of one day's latent state rolled forward by the LSTM
(with an unshocked rollout beside it, so the shock's effect and its half-life are measured against the
model's own drift), and Monte Carlo latent scenarios decoded in large batches (on GPU through the fused
Triton decoder when the world lives on CUDA)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volfast.agent._config import AgentError, load_section, write_json
from volfast.agent.world import World, load_world, surface_features

__all__ = ["StressConfig", "crash_direction", "half_life", "monte_carlo", "run_stress", "shock_rollout"]


@dataclasses.dataclass(frozen=True)
class StressConfig:
    date: str = ""  # start day YYYY-MM-DD; "" = the worst day in the data (highest front ATM vol)
    shock: str = (
        "direction"  # direction: add magnitude x the crash direction | scale: mean + scale x (z - mean)
    )
    magnitude: float = 3.0  # direction shock size, in units of the average crash-day latent move
    scale: float = 2.0  # scale shock factor about the training mean latent
    crash_quantile: float = 0.95  # crash days: training days whose front ATM vol rise is above this quantile
    steps: int = 50  # LSTM rollout steps (trading days)
    mc_scenarios: int = 10000  # Monte Carlo scenarios (0: none)
    mc_source: str = (
        "lstm"  # lstm: rollout with residual noise | prior: N(0, I) | gaussian: N(train mean, cov)
    )
    mc_horizon: int = 20  # Monte Carlo rollout steps (lstm source)
    mc_batch: int = 4096  # scenarios decoded per batch
    seed: int = 0
    frames: bool = True  # PNG frames of the surface through the shock, and a GIF when pillow is present

    def __post_init__(self) -> None:
        if self.shock not in ("direction", "scale"):
            raise ValueError(f"StressConfig.shock must be direction or scale; got {self.shock!r}")
        if self.mc_source not in ("lstm", "prior", "gaussian"):
            raise ValueError(
                f"StressConfig.mc_source must be lstm, prior or gaussian; got {self.mc_source!r}"
            )
        if self.steps < 1 or self.mc_horizon < 1 or self.mc_batch < 1 or self.mc_scenarios < 0:
            raise ValueError("StressConfig: steps, mc_horizon, mc_batch >= 1 and mc_scenarios >= 0 needed")
        if not 0.0 < self.crash_quantile < 1.0:
            raise ValueError("StressConfig.crash_quantile must be in (0, 1)")


def _features(world: World, vols: np.ndarray, years: np.ndarray) -> dict[str, np.ndarray]:
    return surface_features(vols, world.k, np.broadcast_to(years, vols.shape[:-1]))


def day_features(world: World) -> dict[str, np.ndarray]:
    """Features of every day's observed grid (NaN on incomplete days)."""
    return surface_features(world.ds.cvae, world.k, world.ds.cvae_expiry_years)


def worst_day(world: World) -> int:
    """Row of the complete day with the highest front ATM vol."""
    atm = np.where(world.ok, day_features(world)["atm"], -np.inf)
    return int(np.argmax(atm))


def crash_direction(world: World, quantile: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Average latent move on the training period's crash days (front ATM vol rise above ``quantile`` of
    the training rises, consecutive complete days only). Returns (direction (L,), crash rows)."""
    atm = day_features(world)["atm"]
    seg = world.segments()
    tr = world.train_mask()
    rows = np.flatnonzero(tr[1:] & tr[:-1] & (seg[1:] == seg[:-1])) + 1
    if rows.size < 5:
        raise AgentError(f"{rows.size} consecutive training day pairs; need at least 5 to find crash days")
    rise = atm[rows] - atm[rows - 1]
    crash = rows[rise > np.quantile(rise, quantile)]
    if crash.size == 0:
        crash = rows[[int(np.argmax(rise))]]
    d = (world.z[crash] - world.z[crash - 1]).mean(axis=0)
    return d, crash


def half_life(excess: np.ndarray) -> float:
    """Steps until |excess| first falls to half its value at step 0 (linear interpolation between steps);
    NaN when it never does within the path (no reversion) or the shock is zero."""
    e = np.abs(np.asarray(excess, dtype=np.float64))
    if e.size < 2 or not e[0] > 0:
        return float("nan")
    half = 0.5 * e[0]
    below = np.flatnonzero(e <= half)
    if below.size == 0:
        return float("nan")
    i = int(below[0])
    return float(i - 1 + (e[i - 1] - half) / (e[i - 1] - e[i]))


def _train_stats(world: World) -> tuple[np.ndarray, np.ndarray]:
    ztr = world.z[world.train_mask()]
    return ztr.mean(axis=0), np.atleast_2d(np.cov(ztr, rowvar=False))


def shock_rollout(world: World, cfg: StressConfig, row: int) -> dict[str, Any]:
    """Shock day ``row``'s latent and roll both the shocked and the unshocked windows ``cfg.steps`` ahead.

    Returns latents ``z_shock``/``z_base`` (steps + 1, L) (step 0 = the shocked / unshocked start), decoded
    vols (steps + 1, 3, 11) each, their features, the shock's excess path and half-life per feature."""
    win = world.window_at(row)  # (T, L)
    z0 = win[-1]
    mean, _ = _train_stats(world)
    if cfg.shock == "direction":
        d, crash = crash_direction(world, cfg.crash_quantile)
        z1 = z0 + cfg.magnitude * d
    else:
        crash = np.empty(0, dtype=np.int64)
        z1 = mean + cfg.scale * (z0 - mean)
    shocked = win.copy()
    shocked[-1] = z1
    w = torch.as_tensor(np.stack([shocked, win]), dtype=torch.float32, device=world.device)  # (2, T, L)
    path = world.lstm.rollout(w, cfg.steps).double().cpu().numpy()  # (2, steps, L)
    zs = np.concatenate([z1[None], path[0]])
    zb = np.concatenate([z0[None], path[1]])
    years = world.ds.cvae_expiry_years[row]  # constant expiries: the shape of the shock, not of ageing
    yy = np.broadcast_to(years, (zs.shape[0], years.size))
    vs, vb = world.decode(zs, yy), world.decode(zb, yy)
    fs, fb = _features(world, vs, years), _features(world, vb, years)
    excess = {k: fs[k] - fb[k] for k in fs}
    return {
        "row": row,
        "date": str(world.ds.dates[row]),
        "z_shock": zs,
        "z_base": zb,
        "vols_shock": vs,
        "vols_base": vb,
        "years": years,
        "features_shock": fs,
        "features_base": fb,
        "excess": excess,
        "half_life": {k: half_life(v) for k, v in excess.items()},
        "crash_rows": crash,
    }


def residual_std(world: World) -> np.ndarray:
    """Per-latent std of the LSTM's one-step errors on the training period (the Monte Carlo noise)."""
    seg = world.segments()
    tr = world.train_mask()
    rows = np.flatnonzero(tr[1:] & (seg[1:] == seg[:-1]) & (seg[1:] >= 0)) + 1
    if rows.size < 3:
        raise AgentError(f"{rows.size} one-step training pairs; need at least 3 for the LSTM residuals")
    err = []
    with torch.no_grad():
        for r in rows:
            win = world.window_at(int(r) - 1)
            t = torch.as_tensor(win[None], dtype=torch.float32, device=world.device)
            err.append(world.z[r] - world.lstm(t)[0].double().cpu().numpy())
    return np.asarray(np.std(np.asarray(err), axis=0))


@torch.no_grad()
def monte_carlo(world: World, cfg: StressConfig, row: int) -> dict[str, Any]:
    """``cfg.mc_scenarios`` latent scenarios from day ``row``, decoded in batches of ``cfg.mc_batch``.

    Returns the scenario latents (S, L), decoded vols (S, 3, 11) at the horizon, the start day's decoded
    surface and the feature moves (scenario - start) per scenario, and the decode throughput."""
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    s_n = cfg.mc_scenarios
    lat = world.z.shape[1]
    years = world.ds.cvae_expiry_years[row]
    z_start = world.z[row]
    if cfg.mc_source == "prior":
        z = torch.randn(s_n, lat, generator=gen, dtype=torch.float64).numpy()
    elif cfg.mc_source == "gaussian":
        mean, cov = _train_stats(world)
        ch = np.linalg.cholesky(cov + 1e-9 * np.eye(lat))
        z = mean + torch.randn(s_n, lat, generator=gen, dtype=torch.float64).numpy() @ ch.T
    else:
        sd = torch.as_tensor(residual_std(world), dtype=torch.float32, device=world.device)
        win0 = torch.as_tensor(world.window_at(row), dtype=torch.float32, device=world.device)
        parts = []
        for s in range(0, s_n, cfg.mc_batch):
            b = min(cfg.mc_batch, s_n - s)
            w = win0[None].expand(b, -1, -1).clone()
            for _ in range(cfg.mc_horizon):
                eps = torch.randn(b, lat, generator=gen).to(world.device)
                nxt = world.lstm(w) + sd * eps
                w = torch.cat([w[:, 1:], nxt[:, None]], dim=1)
            parts.append(w[:, -1].double().cpu().numpy())
        z = np.concatenate(parts) if parts else np.empty((0, lat))
    vols = np.empty((s_n, *world.ds.cvae.shape[1:]))
    t0 = time.perf_counter()
    for s in range(0, s_n, cfg.mc_batch):
        zb = z[s : s + cfg.mc_batch]
        vols[s : s + zb.shape[0]] = world.decode(zb, np.broadcast_to(years, (zb.shape[0], years.size)))
    if world.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    v0 = world.decode(z_start[None], years[None])[0]
    f0 = _features(world, v0[None], years)
    fs = _features(world, vols, years)
    return {
        "z": z,
        "vols": vols,
        "start_vols": v0,
        "moves": {k: fs[k] - f0[k][0] for k in fs},
        "decode_seconds": dt,
        "scenarios_per_second": s_n / dt if dt > 0 else float("inf"),
    }


def _quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.01, 0.05, 0.5, 0.95, 0.99)
    return {f"q{int(q * 100):02d}": float(np.quantile(x, q)) for q in qs} | {"mean": float(np.mean(x))}


def write_frames(world: World, res: dict[str, Any], folder: Path) -> dict[str, Any]:
    """PNG frames of the shocked surface (smiles per expiry, with the unshocked path dashed) and, when
    pillow is installed, an animated GIF of them. Returns what was written and any message."""
    from volfast._figure import new_axes
    from volfast.io.output import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    vs, vb, k = 100 * res["vols_shock"], 100 * res["vols_base"], world.k  # vol points
    lo, hi = float(min(vs.min(), vb.min())), float(max(vs.max(), vb.max()))
    paths = []
    for s in range(vs.shape[0]):
        ax = new_axes((6, 4), dpi=80)  # object API: no backend switched, no pyplot state
        fig = ax.figure
        for e in range(vs.shape[1]):
            (line,) = ax.plot(k, vs[s, e], label=f"T={res['years'][e] * 365:.0f}d shocked")
            ax.plot(k, vb[s, e], "--", color=line.get_color(), alpha=0.6)
        ax.set_ylim(lo * 0.95, hi * 1.05)
        ax.set_xlabel("log-moneyness ln(K/F)")
        ax.set_ylabel("implied vol (vol points)")
        ax.set_title(f"stress from {res['date']}: step {s} (dashed: unshocked)")
        ax.legend(fontsize=7)
        p = folder / f"frame_{s:03d}.png"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format="png")
        paths.append(p)
    out: dict[str, Any] = {"frames": len(paths), "gif": None, "message": ""}
    try:
        from PIL import Image
    except ImportError:
        out["message"] = "pillow is not installed: PNG frames only (pip install pillow for the GIF)"
        return out
    imgs = [Image.open(p).convert("P", palette=Image.Palette.ADAPTIVE) for p in paths]
    gif = folder.parent / "stress.gif"
    with atomic_path(gif) as tmp:
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=120, loop=0)
    out["gif"] = str(gif)
    return out


def run_stress(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    log: Any = None,
) -> dict[str, Any]:
    """``volfast stress``: shock + rollout + Monte Carlo from a trained run; writes ``OUT/path.parquet``
    (features per step, shocked and unshocked), ``OUT/surfaces.parquet`` (decoded grids per step),
    ``OUT/scenarios.parquet`` (Monte Carlo feature moves and grids), ``OUT/frames/*.png``, ``OUT/stress.gif``
    and ``OUT/stress.json`` (config, half-lives, distributions). Returns the summary."""
    import pyarrow as pa

    from volfast.io.output import write_parquet_atomic

    say = log or (lambda s: None)
    cfg = load_section(StressConfig, "stress", config_path, overrides)
    world = load_world(run, data=data, device=device)
    if cfg.date:
        hit = np.flatnonzero(world.ds.dates == np.datetime64(cfg.date, "D"))
        if hit.size == 0 or not world.ok[hit[0]]:
            raise AgentError(f"stress.date {cfg.date}: not a complete day of the dataset ({world.ds.source})")
        row = int(hit[0])
    else:
        row = worst_day(world)
    res = shock_rollout(world, cfg, row)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    n = res["z_shock"].shape[0]
    cols: dict[str, Any] = {"step": np.tile(np.arange(n), 2), "path": ["shock"] * n + ["base"] * n}
    for kf in ("atm", "skew", "term"):
        cols[kf] = np.concatenate([res["features_shock"][kf], res["features_base"][kf]])
    write_parquet_atomic(pa.table(cols), folder / "path.parquet")
    e_n, k_n = res["vols_shock"].shape[1:]
    st, ii, jj = np.meshgrid(np.arange(n), np.arange(e_n), np.arange(k_n), indexing="ij")
    surf = {
        "step": np.tile(st.ravel(), 2),
        "path": ["shock"] * st.size + ["base"] * st.size,
        "i": np.tile(ii.ravel(), 2).astype(np.int16),
        "expiry_years": np.tile(res["years"][ii.ravel()], 2),
        "log_moneyness": np.tile(world.k[jj.ravel()], 2),
        "vol": np.concatenate([res["vols_shock"].ravel(), res["vols_base"].ravel()]),
    }
    write_parquet_atomic(pa.table(surf), folder / "surfaces.parquet")
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "run": str(Path(run).resolve()),
        "encoder": world.kind,
        "device": str(world.device),
        "start_date": res["date"],
        "crash_days": [str(world.ds.dates[r]) for r in res["crash_rows"]],
        "shock_step0": {k: float(v[0]) for k, v in res["excess"].items()},
        "shock_final": {k: float(v[-1]) for k, v in res["excess"].items()},
        "half_life_steps": res["half_life"],
        "reverts": {k: bool(np.isfinite(v)) for k, v in res["half_life"].items()},
    }
    say(
        f"stress from {res['date']}: ATM vol {res['features_base']['atm'][0]:.4f} -> "
        f"{res['features_shock']['atm'][0]:.4f} shocked; half-life (steps) "
        + ", ".join(f"{k} {v:.1f}" for k, v in res["half_life"].items())
    )
    if cfg.mc_scenarios > 0:
        mc = monte_carlo(world, cfg, row)
        sn = cfg.mc_scenarios
        tab = {"scenario": np.arange(sn)} | {f"d_{k}": v for k, v in mc["moves"].items()}
        flat = mc["vols"].reshape(sn, -1)
        for c in range(flat.shape[1]):
            tab[f"vol_{c // k_n}_{c % k_n}"] = flat[:, c]
        write_parquet_atomic(pa.table(tab), folder / "scenarios.parquet")
        summary["monte_carlo"] = {
            "source": cfg.mc_source,
            "scenarios": sn,
            "decode_seconds": mc["decode_seconds"],
            "scenarios_per_second": mc["scenarios_per_second"],
            "moves": {k: _quantiles(v) for k, v in mc["moves"].items()},
        }
        say(
            f"monte carlo ({cfg.mc_source}, {sn} scenarios): ATM vol move 1%/50%/99% "
            + "/".join(f"{summary['monte_carlo']['moves']['atm'][q]:+.4f}" for q in ("q01", "q50", "q99"))
            + f"; decoded at {mc['scenarios_per_second']:.3g} scenarios/s on {world.device}"
        )
    if cfg.frames:
        summary["frames"] = write_frames(world, res, folder / "frames")
        if summary["frames"]["message"]:
            say(summary["frames"]["message"])
    write_json(folder / "stress.json", summary)
    return summary
