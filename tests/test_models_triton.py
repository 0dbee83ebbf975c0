"""The dense CVAE's decode through the fused Triton decoder (volfast.kernels.mlp_decoder) matches its torch
path. Without a GPU it runs in Triton's CPU interpreter (TRITON_INTERPRET=1 set before triton is imported)."""

from __future__ import annotations

import os

if not os.path.exists("/dev/nvidiactl"):  # before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")
pytest.importorskip("volfast.kernels.mlp_decoder")

from volfast.models import CVAE, CVAEConfig  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1", reason="no GPU and TRITON_INTERPRET unset"
)


def test_triton_decode_matches_torch() -> None:
    torch.manual_seed(0)
    m = CVAE(CVAEConfig()).to(DEVICE)
    x = 0.1 + 0.2 * torch.rand(64, 3, 11, device=DEVICE)
    y = torch.tensor([[0.03, 0.08, 0.2]], device=DEVICE).repeat(64, 1)
    m.fit_stats(x, y)
    z = torch.randn(37, 4, device=DEVICE)
    with torch.no_grad():
        ref = m.decode(z, y[:37], backend="torch")
        got = m.decode(z, y[:37], backend="triton")
    assert got.shape == (37, 3, 11) and bool((got > 0).all())
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    if DEVICE == "cuda":  # auto-selection picks the kernel on CUDA tensors
        with torch.no_grad():
            torch.testing.assert_close(m.decode(z, y[:37]), got, rtol=0, atol=0)


def test_triton_refused_on_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    m = CVAE(CVAEConfig())
    with pytest.raises(RuntimeError, match="CUDA"):
        m.decode(torch.zeros(2, 4), torch.rand(2, 3), backend="triton")
