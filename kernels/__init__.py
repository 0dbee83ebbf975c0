"""Triton GPU kernels, shipped in the wheel as ``volfast.kernels``: one op per module.

- :mod:`volfast.kernels.mlp_decoder`: the dense (C)VAE decoder fused into one launch.
- :mod:`volfast.kernels.implied_vol`: float64 Black-76 implied vol, a port of the C++ solver.

Each module has a private ``@triton.jit`` kernel, a public launcher and a torch (or C++) reference beside it.
The launchers take CUDA tensors; CPU tensors run only under ``TRITON_INTERPRET=1`` (set before triton is
imported), which is how the tests check them on machines without a GPU.
"""

from __future__ import annotations

try:
    import triton  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the optional dependency
    raise ImportError(
        "volfast.kernels needs the triton package (pip install triton, Linux with an NVIDIA GPU); "
        f"it failed to import: {exc}"
    ) from exc


def gpu_available() -> bool:
    """True when a CUDA GPU with a driver is usable (not merely that ``import triton`` works)."""
    import torch

    return bool(torch.cuda.is_available())


__all__ = ["gpu_available"]
