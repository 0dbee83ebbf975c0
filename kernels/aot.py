"""Compile volfast's Triton kernels for an NVIDIA GPU ahead of time, on a machine without one.

Triton's CPU interpreter (``TRITON_INTERPRET=1``, what the tests use without a GPU) runs a kernel's Python
with numpy: it checks the numbers, not that the kernel compiles. This module runs the real compiler
(Triton -> TTIR -> TTGIR -> LLVM IR -> PTX -> cubin, with the ``ptxas`` bundled in Triton's wheel) for a
target such as the H200 (sm_90) on every variant the launchers can ask for, so a kernel that the
interpreter accepts but the compiler rejects fails here, before anyone has a GPU to try it on.

    python -m volfast.kernels.aot [--arch 90] [--json] [--quick]

Needs ``TRITON_INTERPRET`` unset (the interpreter replaces the kernels with Python functions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["QUICK", "Variant", "compile_variant", "main", "variants"]


@dataclass(frozen=True)
class Variant:
    """One specialisation of a kernel: argument types (``*fp64``, ``i32``...) and constexpr values."""

    name: str
    kernel: str  # "implied_vol" or "mlp_decoder"
    signature: dict[str, str]
    constexprs: dict[str, Any]
    num_warps: int = 4
    num_stages: int = 1


def _iv_variants() -> Iterator[Variant]:
    from volfast.kernels import implied_vol as kiv

    fn = kiv._implied_vol_kernel
    sig: dict[str, str] = {}
    for par in fn.params:
        a = par.name
        if par.is_constexpr:
            sig[a] = "constexpr"
        elif a in ("call_ptr", "status_ptr"):
            sig[a] = "*u8"  # is_call as 0/1 bytes, status codes
        elif a.endswith("_ptr"):
            sig[a] = "*fp64"
        else:
            sig[a] = "i64"  # n and the strides (int64 offsets: batches beyond 2^31)
    yield Variant(
        "implied_vol fp64",
        "implied_vol",
        sig,
        {"BLOCK": kiv._BLOCK, "MAX_ITER": kiv._MAX_ITERATIONS},
    )


def _decoder_variants() -> Iterator[Variant]:
    import triton.language as tl
    from volfast.kernels import mlp_decoder as kmlp

    fn = kmlp._mlp_decoder_kernel
    dtypes = {"fp32": tl.float32, "bf16": tl.bfloat16, "fp16": tl.float16}
    cases = [
        # (dtype, precision, hidden widths, d_out, hidden act, out act, affine, BLOCK_B, warps)
        ("fp32", "tf32x3", (7, 48, 48), 33, "silu", "softplus", True, 64, 4),  # the default CVAE decoder
        ("fp32", "tf32x3", (16, 256, 256), 300, "silu", "softplus", True, 128, 8),
        ("fp32", "ieee", (16, 128), 64, "relu", "none", False, 64, 4),
        ("fp32", "tf32", (8, 64, 64, 64), 1000, "silu", "silu", True, 256, 8),
        ("bf16", "tf32", (16, 256, 256), 300, "silu", "softplus", True, 128, 8),
        ("fp16", "tf32", (32, 256), 128, "relu", "relu", False, 64, 4),
    ]
    data_ptrs = {"x_ptr", "out_ptr", "w0", "b0", "w1", "b1", "w2", "b2", "wl", "bl"}
    for dt, prec, widths, d_out, hid, out, affine, block_b, warps in cases:
        n_hidden = len(widths) - 1
        _, pads, block_n, n_chunks = kmlp._tiles(widths, d_out)
        sig: dict[str, str] = {}
        for par in fn.params:
            if par.is_constexpr:
                sig[par.name] = "constexpr"
            elif par.name in data_ptrs:
                sig[par.name] = f"*{dt}"
            elif par.name in ("scale_ptr", "shift_ptr"):
                sig[par.name] = "*fp32"
            else:  # sizes and strides
                sig[par.name] = "i32"
        const = {
            "P0": pads[0], "P1": pads[1], "P2": pads[2], "P3": pads[3], "N_HIDDEN": n_hidden,
            "HIDDEN_ACT": kmlp._ACT_CODE[hid], "OUT_ACT": kmlp._ACT_CODE[out], "HAS_AFFINE": affine,
            "DT": dtypes[dt], "PREC": prec, "BLOCK_B": block_b, "BLOCK_N": block_n, "N_CHUNKS": n_chunks,
            "UPCAST": False,
        }  # fmt: skip
        name = f"mlp_decoder {dt}/{prec} {'x'.join(map(str, widths))}->{d_out} B{block_b} w{warps}"
        yield Variant(name, "mlp_decoder", sig, const, num_warps=warps)


#: Variants that compile in seconds (the rest take up to a minute each on 2 CPU cores).
QUICK = ("implied_vol fp64", "mlp_decoder fp32/tf32x3 7x48x48->33", "mlp_decoder fp16/tf32 32x256->128")


def variants(*, quick: bool = False) -> list[Variant]:
    """Every specialisation checked: the implied-vol kernel and the decoder over its dtypes, precisions,
    depths, activations and tile sizes (the autotuner's BLOCK_B / warps included); ``quick``: the
    :data:`QUICK` ones."""
    out = [*_iv_variants(), *_decoder_variants()]
    return [v for v in out if v.name.startswith(QUICK)] if quick else out


def _staged(v: Variant) -> int | None:
    """:func:`~volfast.kernels.mlp_decoder.staged_weight_bytes` of a decoder variant (None otherwise)."""
    if v.kernel != "mlp_decoder":
        return None
    import torch
    from volfast.kernels import mlp_decoder as kmlp

    c = v.constexprs
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[v.signature["x_ptr"][1:]]
    pads = [c["P0"], c["P1"], c["P2"], c["P3"]]
    return kmlp.staged_weight_bytes(pads, c["N_HIDDEN"], c["BLOCK_N"], dtype, c["PREC"])


def compile_variant(v: Variant, *, arch: int = 90) -> dict[str, Any]:
    """Compile ``v`` for ``sm_<arch>``; a record with ``ok``, the error if any, seconds and sizes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from volfast.kernels import implied_vol as kiv
    from volfast.kernels import mlp_decoder as kmlp

    fn = kiv._implied_vol_kernel if v.kernel == "implied_vol" else kmlp._mlp_decoder_kernel
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"name": v.name, "arch": arch}
    try:
        src = ASTSource(fn=fn, signature=v.signature, constexprs=v.constexprs)
        k = triton.compile(
            src,
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": v.num_warps, "num_stages": v.num_stages},
        )
        rec |= {
            "ok": True,
            "staged_weight_bytes": _staged(v),
            "ptx_bytes": len(k.asm["ptx"]),
            "cubin_bytes": len(k.asm["cubin"]),
            "shared_bytes": int(getattr(k.metadata, "shared", 0)),
        }
    except Exception as exc:  # the compiler's errors come in many types; report, go on with the rest
        rec |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m volfast.kernels.aot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    ap.add_argument("--json", action="store_true", help="one JSON record per variant on stdout")
    ap.add_argument("--quick", action="store_true", help="only the variants that compile in seconds")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print(
            "volfast.kernels.aot: unset TRITON_INTERPRET (the interpreter does not compile)", file=sys.stderr
        )
        return 2
    failed = 0
    for v in variants(quick=args.quick):
        rec = compile_variant(v, arch=args.arch)
        failed += not rec["ok"]
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            what = (
                f"ok  {rec['cubin_bytes'] / 1024:7.1f} KiB cubin, "
                f"{rec['shared_bytes'] / 1024:6.1f} KiB shared"
                if rec["ok"]
                else f"FAILED {rec['error']}"
            )
            print(f"sm_{args.arch}  {v.name:52} {what}  ({rec['seconds']} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
