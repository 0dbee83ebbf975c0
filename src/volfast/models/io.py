"""Save and load models: ``model.pt`` (the state dict, buffers included: normalisation statistics travel
with the weights) beside ``model.json`` (model kind, its config, versions). Reloads are bit-for-bit and
can be mapped to CPU or CUDA."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any

import torch
from torch import nn

from volfast.errors import UsageError, VolfastError
from volfast.models.cvae import CVAE, ConvCVAE, CVAEConfig
from volfast.models.lstm import LatentLSTM, LSTMConfig
from volfast.models.pca import PCA, PCAConfig
from volfast.models.vae import VAE, VAEConfig

__all__ = ["MODEL_KINDS", "ModelConfigError", "build_model", "config_from_dict", "load_model", "save_model"]

#: model kind -> (module class, config class)
MODEL_KINDS: dict[str, tuple[type[nn.Module], type[Any]]] = {
    "pca": (PCA, PCAConfig),
    "vae": (VAE, VAEConfig),
    "cvae": (CVAE, CVAEConfig),
    "cvae-conv": (ConvCVAE, CVAEConfig),
    "lstm": (LatentLSTM, LSTMConfig),
}
MODEL_FILE = "model.pt"
META_FILE = "model.json"


class ModelConfigError(VolfastError, ValueError):
    """A config that does not fit a model kind or a saved model (names the file or key)."""


class SettingsError(ModelConfigError, UsageError):
    """A config file, table, key or ``--set`` value that cannot be used, found when the config is read
    (names the file, table and key); a usage error (exit code 2)."""


def _check_kind(kind: str) -> tuple[type[nn.Module], type[Any]]:
    if kind not in MODEL_KINDS:
        raise ModelConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[kind]


def config_from_dict(cls: type[Any], d: dict[str, Any], *, where: str = "") -> Any:
    """Build a frozen config dataclass from a plain dict (TOML/JSON); unknown keys and wrong types are
    errors naming ``where``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        place = where or cls.__name__
        raise SettingsError(f"{place}: unknown keys {unknown}; known: {sorted(fields)}", where=place)
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for k, v in d.items():
        want = hints[k]
        if isinstance(v, list):
            v = tuple(v)
        origin = typing.get_origin(want) or want
        if origin is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        ok = isinstance(v, origin) and not (origin in (int, float) and isinstance(v, bool))
        if not ok:
            place = f"{where or cls.__name__} {k}"
            name = getattr(want, "__name__", str(want))
            raise SettingsError(f"{place}: expected {name}, got {v!r}", where=place)
        kw[k] = v
    try:
        return cls(**kw)
    except (ValueError, TypeError) as exc:
        place = where or cls.__name__
        raise SettingsError(f"{place}: {exc}", where=place) from None


def build_model(kind: str, config: Any) -> Any:
    model_cls, cfg_cls = _check_kind(kind)
    if not isinstance(config, cfg_cls):
        raise ModelConfigError(f"model {kind!r} takes a {cfg_cls.__name__}, got {type(config).__name__}")
    return model_cls(config)


def save_model(folder: str | os.PathLike[str], kind: str, model: nn.Module, **extra: Any) -> Path:
    """Write ``FOLDER/model.pt`` and ``FOLDER/model.json`` (atomically: temporary names, then rename)."""
    import volfast

    _check_kind(kind)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config: Any = model.config
    meta = {
        "kind": kind,
        "config": dataclasses.asdict(config),
        "volfast_version": getattr(volfast, "__version__", "unknown"),
        "torch_version": torch.__version__,
        **extra,
    }
    from volfast.io.output import atomic_path, atomic_write_bytes

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / MODEL_FILE) as tmp_pt:  # the one atomic write (fsync, rename, umask)
        torch.save(state, tmp_pt)
    atomic_write_bytes(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True).encode())
    return out


def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(folder) / META_FILE
    try:
        meta: dict[str, Any] = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{p}: missing; {folder} is not a saved volfast model") from None
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"{p}: not valid JSON ({exc})") from None
    return meta


def load_model(
    folder: str | os.PathLike[str], *, map_location: str | torch.device = "cpu", config: Any = None
) -> tuple[str, Any]:
    """Rebuild a saved model from ``model.json`` and load ``model.pt`` strictly, in eval mode.

    ``config``: when given, it must equal the saved config, else :class:`ModelConfigError` says which
    fields differ. A state dict that does not fit the config (edited JSON, wrong file) is also a
    :class:`ModelConfigError` naming the file. Returns ``(kind, model)``.
    """
    meta = read_meta(folder)
    kind = meta.get("kind", "")
    _, cfg_cls = _check_kind(kind)
    meta_path = Path(folder) / META_FILE
    saved = config_from_dict(cfg_cls, meta.get("config", {}), where=str(meta_path))
    if config is not None and config != saved:
        diff = {
            f.name: (getattr(config, f.name), getattr(saved, f.name))
            for f in dataclasses.fields(saved)
            if getattr(config, f.name, None) != getattr(saved, f.name)
        }
        raise ModelConfigError(f"{meta_path}: config does not match the saved model (given, saved): {diff}")
    model = build_model(kind, saved)
    pt = Path(folder) / MODEL_FILE
    try:
        state = torch.load(pt, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelConfigError(f"{pt}: missing") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelConfigError(
            f"{pt}: weights do not fit the config in {meta_path}: {' '.join(first)}"
        ) from None
    model.to(map_location)
    model.eval()
    return kind, model
