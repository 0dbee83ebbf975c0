"""Fused dense decoder: the whole MLP ``[z, y] -> Linear -> SiLU -> ... -> Linear -> softplus`` in one launch.

One program walks over tiles of ``BLOCK_B`` rows (a persistent grid of a few programs per SM): it loads the
hidden-layer weights once, then for each tile reads the input rows, runs every layer with ``tl.dot`` while
the activations stay in registers, applies the output activation and the per-output affine
``out * out_scale + out_shift`` (the un-normalisation of the surface), and writes the rows. HBM traffic is
the input and the output and nothing else. Sizes that are not a power of two of at least 16 (``tl.dot``'s
minimum) are zero-padded inside the kernel by masked loads, so any ``nn.Linear`` shapes work: the default
CVAE decoder is 7 -> 48 -> 48 -> 33, computed as 16 -> 64 -> 64 -> 64 tiles. The last layer is produced in
column chunks of at most 128, so a wide output (the dense stem of a conv decoder, e.g. 4 -> 256 -> 2048)
needs no more on chip than 128 columns; hidden layers are held on chip and are limited to 256 wide.

On-chip budget: ``tl.dot`` stages the weight tiles in shared memory, (sum of padded in x out tile sizes of
the hidden layers + padded last input x the output chunk) x the element size, twice for float32 in
``tf32x3`` (its high and low parts): a lower bound of the compiler's shared memory, equal to it where the
weights dominate (``python -m volfast.kernels.aot`` on sm_90: 800 KiB for a float32 16 -> 256 -> 256 -> 300
decoder in ``tf32x3``, 200 KiB in bfloat16); activation tiles add some (the default CVAE decoder: 72 KiB
of weights, 88 KiB in all). The H100/H200 give a block 227 KiB: a decoder whose weights alone exceed a
block is refused before launch with :class:`DecoderTooLarge`, which names the need and the limit, and so
is one that Triton finds out of resources at launch (the CVAE then decodes with torch).

Numeric contract (tests/test_kernels.py, against :func:`fused_mlp_decoder_reference`):

* float32 inputs: products on tensor cores in ``tf32x3`` (three TF32 products, about 2^-22 relative) or, with
  ``precision="ieee"``, plain FP32 FMAs; fp32 accumulation; within 1e-5 relative of the reference (scaled by
  the output magnitude).
* bfloat16 inputs: bf16 products with fp32 accumulation, bias and activations in fp32, each hidden
  activation rounded to bf16 before the next product (what a bf16 torch module does): within about 1e-2.

Weights are cast to the compute dtype (the dtype of ``x``) inside the kernel, so a float32 module can
decode bfloat16 latents without a host-side copy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from volfast.errors import VolfastError

__all__ = [
    "DecoderTooLarge",
    "fused_mlp_decoder",
    "fused_mlp_decoder_reference",
    "layers_from_module",
    "staged_weight_bytes",
]

HIDDEN_ACTIVATIONS = ("silu", "relu")
OUTPUT_ACTIVATIONS = ("softplus", "silu", "relu", "none")
_ACT_CODE = {"none": 0, "silu": 1, "relu": 2, "softplus": 3}
_MAX_HIDDEN = 256
_MAX_LAYERS = 4
_CHUNK_N = 128
_HOPPER_SHARED_BYTES = 232448  # 227 KiB: a block's opt-in maximum on the H100 / H200


class DecoderTooLarge(VolfastError, ValueError):
    """The decoder's weights do not fit in one block's shared memory on this device."""


def staged_weight_bytes(
    pads: Sequence[int], n_hidden: int, block_n: int, dtype: torch.dtype, precision: str
) -> int:
    """Bytes of weight tiles ``tl.dot`` stages in shared memory for one program: hidden layers
    ``pads[i] x pads[i + 1]`` (``i < n_hidden``) and the last layer ``pads[n_hidden] x block_n``, at the
    element size of ``dtype``, doubled for float32 ``tf32x3``. A lower bound of the kernel's shared memory
    (equal to the compiler's count for ``tf32x3`` and 16-bit inputs on sm_90)."""
    elems = sum(pads[i] * pads[i + 1] for i in range(n_hidden)) + pads[n_hidden] * block_n
    size = 4 if dtype == torch.float32 else 2
    return elems * size * (2 if dtype == torch.float32 and precision == "tf32x3" else 1)


def _shared_limit(device: torch.device) -> int | None:
    """A block's shared-memory limit on ``device`` (bytes); None under the interpreter (no limit)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "shared_memory_per_block_optin", 0) or _HOPPER_SHARED_BYTES)


@triton.jit
def _activate(h, ACT: tl.constexpr):
    """Activation in fp32: 0 none, 1 SiLU, 2 ReLU, 3 softplus (torch's beta 1, threshold 20)."""
    if ACT == 1:
        h = h / (1.0 + tl.exp(-h))
    elif ACT == 2:
        h = tl.maximum(h, 0.0)
    elif ACT == 3:
        # max(h, 0) + log1p(exp(-|h|)); log1p by Goldberg's trick so tiny results keep their digits
        u = tl.exp(-tl.abs(h))
        w = 1.0 + u
        d = w - 1.0
        l1p = tl.where(d == 0.0, u, tl.log(w) * (u / tl.where(d == 0.0, 1.0, d)))
        h = tl.where(h > 20.0, h, tl.maximum(h, 0.0) + l1p)
    return h


@triton.jit
def _dot(a, b, PREC: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST (interpreter only: its dot cannot multiply 16-bit floats)
    widens 16-bit operands first; bf16 x bf16 products are exact in fp32, so the result is the same."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee", out_dtype=tl.float32)
    return tl.dot(a, b, input_precision=PREC, out_dtype=tl.float32)


@triton.jit
def _load_wt(w_ptr, s_n, s_k, n0, K, N, PK: tl.constexpr, PN: tl.constexpr, DT: tl.constexpr):
    """W^T[:, n0:n0+PN] of an nn.Linear weight W (N, K), zero-padded to (PK, PN), in the compute dtype."""
    k = tl.arange(0, PK)
    n = n0 + tl.arange(0, PN)
    mask = (k[:, None] < K) & (n[None, :] < N)
    w = tl.load(w_ptr + n[None, :].to(tl.int64) * s_n + k[:, None].to(tl.int64) * s_k, mask=mask, other=0.0)
    return w.to(DT)


@triton.jit
def _load_bias(b_ptr, n0, N, PN: tl.constexpr, DT: tl.constexpr):
    """Bias rounded to the compute dtype (as a module in that dtype holds it), added in fp32."""
    n = n0 + tl.arange(0, PN)
    return tl.load(b_ptr + n, mask=n < N, other=0.0).to(DT).to(tl.float32)


@triton.jit
def _mlp_decoder_kernel(
    x_ptr, out_ptr, scale_ptr, shift_ptr,
    w0, b0, w1, b1, w2, b2, wl, bl,
    s_w0n, s_w0k, s_w1n, s_w1k, s_w2n, s_w2k, s_wln, s_wlk,
    B, s_xb, s_xk, s_ob,
    D0, D1, D2, D3, D_OUT,
    B_BUCKET,  # autotuning key only
    P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,
    N_HIDDEN: tl.constexpr, HIDDEN_ACT: tl.constexpr, OUT_ACT: tl.constexpr, HAS_AFFINE: tl.constexpr,
    DT: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
    N_CHUNKS: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    # D0..D3: widths of the input and of hidden layers 1..3; P0..P3 their padded sizes. Hidden layer i maps
    # D_i -> D_(i+1) with (w_i, b_i); the last layer (wl, bl) maps D_(N_HIDDEN) -> D_OUT.
    # Hidden-layer weights: loaded once per program, reused for every tile it handles.
    if N_HIDDEN >= 1:
        wt0 = _load_wt(w0, s_w0n, s_w0k, 0, D0, D1, P0, P1, DT)
        bias0 = _load_bias(b0, 0, D1, P1, DT)
    if N_HIDDEN >= 2:
        wt1 = _load_wt(w1, s_w1n, s_w1k, 0, D1, D2, P1, P2, DT)
        bias1 = _load_bias(b1, 0, D2, P2, DT)
    if N_HIDDEN >= 3:
        wt2 = _load_wt(w2, s_w2n, s_w2k, 0, D2, D3, P2, P3, DT)
        bias2 = _load_bias(b2, 0, D3, P3, DT)
    if N_HIDDEN == 0:
        d_last = D0
    elif N_HIDDEN == 1:
        d_last = D1
    elif N_HIDDEN == 2:
        d_last = D2
    else:
        d_last = D3
    PL: tl.constexpr = P0 if N_HIDDEN == 0 else (P1 if N_HIDDEN == 1 else (P2 if N_HIDDEN == 2 else P3))
    if N_CHUNKS == 1:
        wt_last = _load_wt(wl, s_wln, s_wlk, 0, d_last, D_OUT, PL, BLOCK_N, DT)
        bias_last = _load_bias(bl, 0, D_OUT, BLOCK_N, DT)

    num_tiles = tl.cdiv(B, BLOCK_B)
    kin = tl.arange(0, P0)
    for tile in range(tl.program_id(0), num_tiles, tl.num_programs(0)):
        rows = tl.arange(0, BLOCK_B).to(tl.int64) + tile * BLOCK_B  # int64 row offsets
        rmask = rows < B
        xm = rmask[:, None] & (kin[None, :] < D0)
        h = tl.load(x_ptr + rows[:, None] * s_xb + kin[None, :] * s_xk, mask=xm, other=0.0).to(DT)  # (BB, P0)
        if N_HIDDEN >= 1:
            a = _dot(h, wt0, PREC, UPCAST) + bias0[None, :]
            h = _activate(a, HIDDEN_ACT).to(DT)  # (BB, P1)
        if N_HIDDEN >= 2:
            a = _dot(h, wt1, PREC, UPCAST) + bias1[None, :]
            h = _activate(a, HIDDEN_ACT).to(DT)  # (BB, P2)
        if N_HIDDEN >= 3:
            a = _dot(h, wt2, PREC, UPCAST) + bias2[None, :]
            h = _activate(a, HIDDEN_ACT).to(DT)  # (BB, P3)
        for c in tl.static_range(N_CHUNKS):
            n0 = c * BLOCK_N
            if N_CHUNKS == 1:
                wt = wt_last
                bias = bias_last
            else:
                wt = _load_wt(wl, s_wln, s_wlk, n0, d_last, D_OUT, PL, BLOCK_N, DT)
                bias = _load_bias(bl, n0, D_OUT, BLOCK_N, DT)
            o = _dot(h, wt, PREC, UPCAST) + bias[None, :]
            o = _activate(o, OUT_ACT)  # (BB, BLOCK_N) fp32
            cols = n0 + tl.arange(0, BLOCK_N)
            cmask = cols < D_OUT
            if HAS_AFFINE:
                sc = tl.load(scale_ptr + cols, mask=cmask, other=1.0).to(tl.float32)
                sh = tl.load(shift_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
                o = o * sc[None, :] + sh[None, :]
            optr = out_ptr + rows[:, None] * s_ob + cols[None, :]
            tl.store(optr, o.to(out_ptr.dtype.element_ty), mask=rmask[:, None] & cmask[None, :])


def _autotune_configs() -> list[triton.Config]:
    return [
        triton.Config({"BLOCK_B": bb}, num_warps=nw, num_stages=1)
        for bb in (64, 128, 256)
        for nw in (4, 8)
        if not (bb == 256 and nw == 4)
    ]


_mlp_decoder_kernel_tuned = triton.autotune(
    configs=_autotune_configs(),
    key=["B_BUCKET", "D0", "D1", "D2", "D3", "D_OUT", "N_HIDDEN", "DT", "PREC", "OUT_ACT", "HAS_AFFINE"],
)(_mlp_decoder_kernel)


# ---- launcher ---------------------------------------------------------------------------------------


def _empty(shape: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output allocation (one place, so tests can poison it and catch unwritten elements)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _pad(d: int) -> int:
    return max(16, 1 << (int(d) - 1).bit_length())


def _tiles(widths: Sequence[int], d_out: int) -> tuple[list[int], list[int], int, int]:
    """Kernel sizes for a decoder whose input and hidden widths are ``widths`` (1 to 4) and output
    ``d_out``: the four widths D0..D3 (unused ones 1), their padded tile sizes P0..P3, the output chunk
    BLOCK_N and the number of chunks."""
    dims = [int(d) for d in widths] + [1] * (_MAX_LAYERS - len(widths))
    block_n = min(_pad(d_out), _CHUNK_N)
    return dims, [_pad(d) for d in dims], block_n, triton.cdiv(_pad(d_out), block_n)


_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _check_layers(x: torch.Tensor, layers: Sequence[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = list(layers)
    if not 1 <= len(pairs) <= _MAX_LAYERS:
        raise ValueError(f"layers: expected 1 to {_MAX_LAYERS} (weight, bias) pairs, got {len(pairs)}")
    d_in = x.shape[1]
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"layers[{i}]: expected a (weight, bias) pair as in nn.Linear")
        w, b = pair
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"layers[{i}]: weight must be a 2-D tensor (D_out, D_in)")
        if w.shape[1] != d_in:
            raise ValueError(
                f"layers[{i}]: weight has shape {tuple(w.shape)} (D_out, D_in) but its input is {d_in} wide"
                + (" (x.shape[1])" if i == 0 else f" (layers[{i - 1}] output)")
            )
        if not isinstance(b, torch.Tensor) or b.shape != (w.shape[0],):
            got = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
            raise ValueError(f"layers[{i}]: bias must have shape ({w.shape[0]},), got {got}")
        for name, t in (("weight", w), ("bias", b)):
            if t.dtype not in _DTYPES:
                raise TypeError(
                    f"layers[{i}]: {name} dtype {t.dtype} not supported (float32, bfloat16, float16)"
                )
            if t.device != x.device:
                raise ValueError(f"layers[{i}]: {name} is on {t.device} but x is on {x.device}")
        if i < len(pairs) - 1 and w.shape[0] > _MAX_HIDDEN:
            raise ValueError(f"layers[{i}]: hidden width {w.shape[0]} exceeds {_MAX_HIDDEN} (kept on chip)")
        if w.shape[1] > _MAX_HIDDEN:
            raise ValueError(f"layers[{i}]: input width {w.shape[1]} exceeds {_MAX_HIDDEN}")
        out.append((w.detach(), b.detach().contiguous()))
        d_in = w.shape[0]
    return out


def _affine(name: str, v: torch.Tensor | None, d_out: int, device: torch.device) -> torch.Tensor | None:
    if v is None:
        return None
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(v, dtype=torch.float32, device=device)
    if v.device != device:
        raise ValueError(f"{name} is on {v.device} but x is on {device}")
    if v.dim() == 0:
        v = v.expand(d_out)
    if v.shape != (d_out,):
        raise ValueError(f"{name}: expected shape ({d_out},) (one value per output), got {tuple(v.shape)}")
    if not v.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating tensor, got {v.dtype}")
    return v.detach().contiguous()


def fused_mlp_decoder(
    x: torch.Tensor,
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    hidden_activation: str = "silu",
    output_activation: str = "softplus",
    out_scale: torch.Tensor | None = None,
    out_shift: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    precision: str = "tf32x3",
) -> torch.Tensor:
    """Run a dense decoder MLP in one Triton launch.

    Parameters
    ----------
    x : torch.Tensor, shape (B, D_in)
        Decoder input (the concatenation ``[z, y]``), float32, bfloat16 or float16, on a CUDA device (CPU
        only under ``TRITON_INTERPRET=1``). Any strides. Its dtype is the compute dtype.
    layers : sequence of (weight, bias)
        1 to 4 ``nn.Linear`` parameter pairs, weight (D_out, D_in), bias (D_out,); hidden widths <= 256,
        and the weights within one block's shared memory (see the module docstring).
    hidden_activation : {'silu', 'relu'}
        Between layers.
    output_activation : {'softplus', 'silu', 'relu', 'none'}
        After the last layer (softplus as torch's ``nn.Softplus()``: beta 1, threshold 20).
    out_scale, out_shift : torch.Tensor, optional
        Per-output vectors (D_out,) of the un-normalisation ``out * out_scale + out_shift``.
    out_dtype : torch.dtype, optional
        Dtype of the result; default the dtype of ``x``.
    precision : {'tf32x3', 'ieee', 'tf32'}
        Product precision for float32 inputs (ignored for 16-bit inputs).

    Returns
    -------
    torch.Tensor, shape (B, D_out), contiguous.

    Raises
    ------
    DecoderTooLarge
        The weights (or weights and activation tiles) exceed a block's shared memory on the device.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x: expected shape (B, D_in), got {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"x: dtype {x.dtype} not supported; use float32 or bfloat16 (or float16)")
    if x.device.type != "cuda" and not _interpreting():
        raise ValueError(
            f"fused_mlp_decoder needs CUDA tensors, got a {x.device.type} tensor; use "
            "fused_mlp_decoder_reference (torch) on the CPU (CPU tensors run only under TRITON_INTERPRET=1, "
            "for tests)"
        )
    if hidden_activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"hidden_activation must be one of {HIDDEN_ACTIVATIONS}, got {hidden_activation!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    if precision not in ("tf32x3", "ieee", "tf32"):
        raise ValueError(f"precision must be 'tf32x3', 'ieee' or 'tf32', got {precision!r}")
    pairs = _check_layers(x, layers)
    d_out = pairs[-1][0].shape[0]
    out_dtype = x.dtype if out_dtype is None else out_dtype
    if out_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"out_dtype must be float32, bfloat16 or float16, got {out_dtype}")
    scale = _affine("out_scale", out_scale, d_out, x.device)
    shift = _affine("out_shift", out_shift, d_out, x.device)
    if (scale is None) != (shift is None):
        scale = scale if scale is not None else torch.ones(d_out, device=x.device)
        shift = shift if shift is not None else torch.zeros(d_out, device=x.device)
    batch = x.shape[0]
    out = _empty((batch, d_out), out_dtype, x.device)
    if batch == 0:
        return out

    n_hidden = len(pairs) - 1
    dims, pads, block_n, n_chunks = _tiles([x.shape[1]] + [w.shape[0] for w, _ in pairs[:-1]], d_out)
    ws: list[Any] = []
    strides: list[int] = []
    for i in range(_MAX_LAYERS - 1):
        w, b = pairs[i] if i < n_hidden else pairs[-1]  # unused slots get any valid pointer
        ws += [w, b]
        strides += [w.stride(0), w.stride(1)] if i < n_hidden else [0, 0]
    ws += list(pairs[-1])
    strides += [pairs[-1][0].stride(0), pairs[-1][0].stride(1)]
    dt = _DTYPES[x.dtype]
    prec = precision if x.dtype == torch.float32 else "tf32"
    need = staged_weight_bytes(pads, n_hidden, block_n, x.dtype, prec)
    limit = _shared_limit(x.device)
    widths = " -> ".join(str(d) for d in [x.shape[1]] + [w.shape[0] for w, _ in pairs])
    if limit is not None and need > limit:
        raise DecoderTooLarge(
            f"fused_mlp_decoder: a {widths} decoder in {x.dtype} ({prec}) stages {need // 1024} KiB of "
            f"weights in shared memory; {x.device} allows {limit // 1024} KiB per block. Use bfloat16 "
            "inputs, precision='ieee', narrower layers, or the torch decoder (fused_mlp_decoder_reference)"
        )
    common = dict(
        P0=pads[0], P1=pads[1], P2=pads[2], P3=pads[3], N_HIDDEN=n_hidden,
        HIDDEN_ACT=_ACT_CODE[hidden_activation], OUT_ACT=_ACT_CODE[output_activation],
        HAS_AFFINE=scale is not None, DT=dt, PREC=prec, BLOCK_N=block_n, N_CHUNKS=n_chunks,
        UPCAST=_interpreting() and x.dtype != torch.float32,
    )  # fmt: skip
    args = [
        x,
        out,
        scale if scale is not None else out,
        shift if shift is not None else out,
        *ws,
        *strides,
        batch,
        x.stride(0),
        x.stride(1),
        out.stride(0),
        *dims,
        d_out,
        int(math.log2(max(batch, 1))) // 2,
    ]
    if _interpreting():
        with np.errstate(all="ignore"):
            _mlp_decoder_kernel[(min(triton.cdiv(batch, 32), 4),)](*args, **common, BLOCK_B=32)
        return out
    n_sm = torch.cuda.get_device_properties(x.device).multi_processor_count

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (min(triton.cdiv(batch, meta["BLOCK_B"]), 4 * n_sm),)

    try:
        _mlp_decoder_kernel_tuned[grid](*args, **common)
    except OutOfResources as exc:  # the activation tiles on top of the weights (every autotuning config)
        raise DecoderTooLarge(f"fused_mlp_decoder: a {widths} decoder in {x.dtype} ({prec}): {exc}") from exc
    return out


def fused_mlp_decoder_reference(
    x: torch.Tensor,
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    hidden_activation: str = "silu",
    output_activation: str = "softplus",
    out_scale: torch.Tensor | None = None,
    out_shift: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    precision: str = "tf32x3",
) -> torch.Tensor:
    """Plain torch, same signature and semantics as :func:`fused_mlp_decoder` (``precision`` is ignored).

    Products in the dtype of ``x`` (torch accumulates 16-bit products in fp32 and rounds each layer's output),
    activations and the affine in fp32.
    """
    import torch.nn.functional as F

    if hidden_activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"hidden_activation must be one of {HIDDEN_ACTIVATIONS}, got {hidden_activation!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}")
    acts: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "silu": F.silu, "relu": F.relu, "softplus": F.softplus, "none": lambda t: t,
    }  # fmt: skip
    pairs = list(layers)
    h = x
    for i, (w, b) in enumerate(pairs):
        a = F.linear(h, w.to(x.dtype), b.to(x.dtype)).float()
        if i < len(pairs) - 1:
            h = acts[hidden_activation](a).to(x.dtype)
        else:
            h = acts[output_activation](a)
    if out_scale is not None:
        h = h * torch.as_tensor(out_scale, device=h.device).float()
    if out_shift is not None:
        h = h + torch.as_tensor(out_shift, device=h.device).float()
    return h.to(x.dtype if out_dtype is None else out_dtype)


def layers_from_module(
    module: torch.nn.Module, *, hidden_activation: str = "silu", output_activation: str = "softplus"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) pairs of an ``nn.Sequential`` of the form Linear, act, Linear, ..., Linear[, out act].

    The activations must be the ones named (``nn.SiLU``/``nn.ReLU`` between layers; ``nn.Softplus()`` with
    beta 1 and threshold 20, ``nn.SiLU``, ``nn.ReLU`` or none after the last); anything else raises
    ``ValueError`` naming the offending child, so a decoder the kernel cannot reproduce is never run.
    Linear layers without bias get a zero bias.
    """
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"expected an nn.Sequential, got {type(module).__name__}")
    hidden_cls = {"silu": torch.nn.SiLU, "relu": torch.nn.ReLU}[hidden_activation]
    out_cls = {"softplus": torch.nn.Softplus, "silu": torch.nn.SiLU, "relu": torch.nn.ReLU, "none": None}[
        output_activation
    ]
    children = list(module.children())
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    i = 0
    while i < len(children):
        lin = children[i]
        if not isinstance(lin, torch.nn.Linear):
            raise ValueError(f"child {i} ({type(lin).__name__}): expected nn.Linear")
        bias = (
            lin.bias
            if lin.bias is not None
            else torch.zeros(lin.out_features, device=lin.weight.device, dtype=lin.weight.dtype)
        )
        pairs.append((lin.weight, bias))
        i += 1
        last = not any(isinstance(c, torch.nn.Linear) for c in children[i:])
        if not last:
            if i >= len(children) or not isinstance(children[i], hidden_cls):
                got = type(children[i]).__name__ if i < len(children) else "nothing"
                raise ValueError(f"child {i} ({got}): expected {hidden_cls.__name__} between Linear layers")
            i += 1
        else:
            rest = children[i:]
            if out_cls is None:
                if rest:
                    raise ValueError(
                        f"child {i} ({type(rest[0]).__name__}): expected nothing after the last Linear"
                    )
            else:
                if len(rest) != 1 or not isinstance(rest[0], out_cls):
                    got = ", ".join(type(c).__name__ for c in rest) or "nothing"
                    raise ValueError(f"after the last Linear: expected {out_cls.__name__}, got {got}")
                sp = rest[0]
                if isinstance(sp, torch.nn.Softplus) and (sp.beta != 1 or sp.threshold != 20):
                    raise ValueError(
                        f"Softplus(beta={sp.beta}, threshold={sp.threshold}): only beta=1, threshold=20"
                    )
            i = len(children)
    if not 1 <= len(pairs) <= _MAX_LAYERS:
        raise ValueError(f"expected 1 to {_MAX_LAYERS} Linear layers, got {len(pairs)}")
    return pairs
