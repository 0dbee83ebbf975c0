"""The world a stress test or hedger runs in: a trained encoder (a model on the (expiry x log-strike) CVAE
grid), the LSTM on its latents, the grid dataset, every complete day's latent mean and the encoder's
walk-forward split; plus the surface features the agent reads (ATM vol, skew, term slope)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from volfast.agent._config import AgentError
from volfast.models.data import Split, sequence_breaks
from volfast.models.io import read_meta
from volfast.models.train import grid_of, latent_sequence
from volfast.surface import SurfaceDataset

__all__ = ["World", "surface_features", "load_world"]

ENCODERS = ("cvae", "cvae-conv", "pca")


@dataclasses.dataclass
class World:
    kind: str  # encoder kind
    encoder: Any
    lstm: Any
    ds: SurfaceDataset
    z: np.ndarray  # (N, L) latent means, NaN rows for incomplete days
    ok: np.ndarray  # (N,) complete days
    split: Split
    device: torch.device

    @property
    def k(self) -> np.ndarray:
        """Log-moneyness ln(K/F) of the grid's columns."""
        return np.asarray(self.ds.config.cvae_k)

    def train_mask(self) -> np.ndarray:
        """Complete days before the test period (train + validation): what thresholds are calibrated on."""
        return self.ok & (self.ds.dates < np.datetime64(self.split.test_start, "D"))

    def test_mask(self) -> np.ndarray:
        return self.ok & (self.ds.dates >= np.datetime64(self.split.test_start, "D"))

    def segments(self) -> np.ndarray:
        return sequence_breaks(self.ds.dates, self.ok, max_gap_days=self.lstm.config.max_gap_days)

    def window_at(self, row: int) -> np.ndarray:
        """Up to ``lstm.config.window`` consecutive complete latents ending at ``row``: (T, L)."""
        seg = self.segments()
        if seg[row] < 0:
            raise AgentError(f"{self.ds.dates[row]}: not a complete day; it has no latent state")
        lo = row
        while lo - 1 >= 0 and seg[lo - 1] == seg[row] and row - lo + 1 < self.lstm.config.window:
            lo -= 1
        return self.z[lo : row + 1]

    @torch.no_grad()
    def decode(self, z: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> np.ndarray:
        """Latents (B, L) and expiry year fractions (B, 3) -> vols (B, 3, 11); CUDA (fused Triton decoder
        for the dense CVAE) when the world lives there."""
        zt = torch.as_tensor(np.array(z, dtype=np.float32), device=self.device)
        yt = torch.as_tensor(np.array(y, dtype=np.float32), device=self.device)
        out = self.encoder.decode(zt, yt)
        return np.asarray(out.double().cpu().numpy())


def surface_features(vols: np.ndarray, k: np.ndarray, years: np.ndarray) -> dict[str, np.ndarray]:
    """ATM vol, skew and term slope of CVAE grids.

    Parameters
    ----------
    vols : (..., E, K) implied vols (fractions) on log-moneyness ``k`` (K,) for ``E`` expiries.
    years : (..., E) expiry year fractions (ACT/365).

    Returns
    -------
    ``atm``: front-expiry vol at k = 0 (fraction); ``skew``: front-expiry (vol(k=-0.10) - vol(k=+0.05)) /
    0.15, vol per unit log-moneyness (positive for the usual equity put skew); ``term``: (ATM vol of the
    last expiry - front ATM vol) / (year-fraction difference), vol per year. Linear interpolation in k.
    """
    v = np.asarray(vols, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)

    def at(x: float, e: int) -> np.ndarray:
        j = int(np.clip(np.searchsorted(k, x) - 1, 0, k.size - 2))
        w = (x - k[j]) / (k[j + 1] - k[j])
        return np.asarray((1 - w) * v[..., e, j] + w * v[..., e, j + 1])

    atm = at(0.0, 0)
    skew = (at(-0.10, 0) - at(0.05, 0)) / 0.15
    yr = np.asarray(years, dtype=np.float64)
    dt = np.maximum(yr[..., -1] - yr[..., 0], 1e-6)
    term = (at(0.0, v.shape[-2] - 1) - atm) / dt
    return {"atm": atm, "skew": skew, "term": term}


def _need(folder: Path, what: str, how: str) -> Path:
    if not (folder / "model.json").is_file():
        raise AgentError(f"{folder}: no trained {what} (model.json missing); produce it with `{how}`")
    return folder


def load_world(
    run: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | SurfaceDataset | None = None,
    encoder: str = "auto",
    device: str = "auto",
) -> World:
    """Read a ``volfast train`` run folder holding an encoder (cvae, cvae-conv or pca on the cvae grid) and
    an ``lstm`` trained on its latents, and encode the dataset (``data`` or the encoder's own).

    Raises :class:`AgentError` naming the missing stage and the command that makes it, or the mismatch
    between model and dataset."""
    root = Path(run)
    if not root.is_dir():
        raise AgentError(
            f"{root}: run folder not found; train one with `volfast train --model cvae --out {root}`"
        )
    if encoder == "auto":
        found = [e for e in ENCODERS if (root / e / "model.json").is_file()]
        if not found:
            raise AgentError(
                f"{root}: no encoder stage (cvae, cvae-conv or pca with grid=cvae); produce one with "
                f"`volfast train --model cvae --data DATA --out {root}`"
            )
        encoder = found[0]
    enc_dir = _need(
        root / encoder, f"{encoder} encoder", f"volfast train --model {encoder} --data DATA --out {root}"
    )
    lstm_dir = _need(
        root / "lstm", "lstm", f"volfast train --model lstm --data DATA --out {root} --encoder {enc_dir}"
    )
    meta = read_meta(enc_dir)
    kind = str(meta["kind"])
    if kind not in ENCODERS or (kind == "pca" and meta["config"].get("grid") != "cvae"):
        raise AgentError(f"{enc_dir}: a {kind} model on another grid; the agent needs one on the cvae grid")
    lmeta = read_meta(lstm_dir)
    if lmeta["config"]["latent"] != meta["config"]["latent"]:
        raise AgentError(
            f"{lstm_dir}: LSTM latent size {lmeta['config']['latent']} does not match the encoder "
            f"{enc_dir} ({meta['config']['latent']}); retrain it with --encoder {enc_dir}"
        )
    lstm_enc = lmeta.get("encoder")
    if lstm_enc is not None and Path(lstm_enc).resolve() != enc_dir.resolve():
        raise AgentError(f"{lstm_dir}: trained on latents of {lstm_enc}, not of {enc_dir}; pass --encoder")
    dev = torch.device(
        "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    if isinstance(data, (str, os.PathLike)):
        from volfast.models.data import open_data

        data = open_data(data)
    if data is not None:
        shape = tuple(data.grid("cvae").shape[1:])
        want = tuple(meta["config"].get("shape", shape))
        if shape != want:
            raise AgentError(
                f"{enc_dir}: the model's grid {want} does not match the dataset's cvae grid {shape}; "
                "retrain on this dataset (`volfast train --data ...`) or pass the dataset it was trained on"
            )
    try:
        seq = latent_sequence(enc_dir, data, device=str(dev))
    except RuntimeError as exc:
        raise AgentError(f"{enc_dir}: the model does not fit the dataset: {exc}") from None
    if grid_of(seq["kind"], seq["encoder"].config) != "cvae":
        raise AgentError(f"{enc_dir}: the agent needs a model on the cvae grid")
    from volfast.models.io import load_model

    _, lstm = load_model(lstm_dir, map_location=dev)
    if not seq["ok"].any():
        raise AgentError(f"{seq['ds'].source or data}: no complete cvae day to encode")
    return World(
        kind=seq["kind"],
        encoder=seq["encoder"],
        lstm=lstm,
        ds=seq["ds"],
        z=seq["z"],
        ok=seq["ok"],
        split=seq["split"],
        device=dev,
    )
