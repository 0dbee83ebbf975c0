"""GPU kernels against their peers in the same run: the fused decoder against torch eager and torch.compile,
and the float64 implied-vol kernel against the C++ core on the CPU.

Run (one command, on a machine with CUDA; skips cleanly elsewhere):

    python benchmarks/bench_kernels.py --out benchmarks/kernels_table.md
    # or through pytest:  python -m pytest benchmarks/bench_kernels.py --benchmark-enable -s

Times are ``triton.testing.do_bench`` medians (warm-up and compilation excluded). Every configuration asserts
its answer first (decoder against torch eager at the dtype's tolerance; implied vol: statuses equal to the
C++ core and vols within 8 attainable floors of it). The table carries the hardware and versions, ready to
paste into benchmarks/RESULTS.md. Environment: VOLFAST_BENCH_MAX_BATCH (default 4194304),
VOLFAST_BENCH_IV_QUOTES (default 16777216).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import pytest
import torch

import volfast

# HBM peak bandwidth (bytes/s) of GPUs we quote fractions of; others report GB/s only.
HBM_PEAK = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100": 2.0e12}


def _peak(name: str) -> float | None:
    for key, bw in HBM_PEAK.items():
        if key in name:
            return bw
    return None


def provenance() -> str:
    import triton

    from volfast.info import cpu_model

    p = torch.cuda.get_device_properties(0)
    return (
        f"GPU {p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB), "
        f"CUDA {torch.version.cuda}, "
        f"torch {torch.__version__}, triton {triton.__version__}, volfast {volfast.__version__}, "
        f"CPU {cpu_model()} x {os.cpu_count()} threads, Python {platform.python_version()}"
    )


def _bench(fn: Any) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))  # ms


def _decoder(dtype: torch.dtype) -> tuple[torch.nn.Sequential, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    nn = torch.nn
    dec = nn.Sequential(
        nn.Linear(7, 48), nn.SiLU(), nn.Linear(48, 48), nn.SiLU(), nn.Linear(48, 33), nn.Softplus()
    )
    dec = dec.to("cuda", dtype).eval()
    scale = (torch.rand(33, device="cuda") + 0.5).to(dtype)
    shift = (torch.randn(33, device="cuda") * 0.1).to(dtype)
    return dec, scale, shift


def decoder_rows(max_batch: int) -> list[dict[str, Any]]:
    from volfast.kernels.mlp_decoder import fused_mlp_decoder, layers_from_module

    rows = []
    name = torch.cuda.get_device_properties(0).name
    peak = _peak(name)
    batches = [b for b in (1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22) if b <= max_batch]
    for dtype, rtol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        dec, scale, shift = _decoder(dtype)
        layers = layers_from_module(dec)

        def eager(x: torch.Tensor, dec: Any = dec, scale: Any = scale, shift: Any = shift) -> torch.Tensor:
            return dec(x) * scale + shift

        compiled = torch.compile(eager, dynamic=False)
        for b in batches:
            x = torch.randn(b, 7, device="cuda", dtype=dtype)
            with torch.no_grad():
                want = eager(x).float()
                got = fused_mlp_decoder(x, layers, out_scale=scale, out_shift=shift).float()
                tol = rtol * (want.abs() + want.abs().max())
                assert bool(((got - want).abs() <= tol).all()), f"decoder {dtype} B={b}: wrong answer"
                assert bool(((compiled(x).float() - want).abs() <= 4 * tol).all())
                t_eager = _bench(lambda x=x, f=eager: f(x))
                t_comp = _bench(lambda x=x, f=compiled: f(x))
                t_tri = _bench(
                    lambda x=x, w=layers, a=scale, c=shift: fused_mlp_decoder(x, w, out_scale=a, out_shift=c)
                )
            nbytes = b * (7 + 33) * x.element_size()
            bw = nbytes / (t_tri * 1e-3)
            rows.append(
                {
                    "dtype": str(dtype).replace("torch.", ""), "batch": b, "eager_ms": t_eager,
                    "compile_ms": t_comp, "triton_ms": t_tri, "x_eager": t_eager / t_tri,
                    "x_compile": t_comp / t_tri, "GB/s": bw / 1e9,
                    "%HBM": 100 * bw / peak if peak else float("nan"),
                }
            )  # fmt: skip
    return rows


def _iv_quotes(n: int, seed: int) -> dict[str, np.ndarray]:
    """The full accuracy domain: vols 1e-3..5, expiries 1h..30y, ln(K/F) in [-5, 3] sqrt(T), calls, puts."""
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n))
    T = np.exp(rng.uniform(np.log(1 / 8760), np.log(30.0), n))
    F = np.exp(rng.uniform(np.log(10.0), np.log(10000.0), n))
    K = F * np.exp(rng.uniform(-5.0, 3.0, n) * np.sqrt(T))
    D = np.exp(-rng.uniform(-0.01, 0.08, n) * T)
    is_call = rng.random(n) < 0.5
    price = volfast.black76_price(
        forward=F, strike=K, expiry_years=T, vol=vol, is_call=is_call, discount_factor=D
    )
    return {
        "price": price,
        "forward": F,
        "strike": K,
        "expiry_years": T,
        "is_call": is_call,
        "discount_factor": D,
    }


def iv_rows(n: int) -> list[dict[str, Any]]:
    from volfast.kernels.implied_vol import implied_vol_triton

    q = _iv_quotes(n, seed=3)
    dev = {k: torch.from_numpy(v).cuda() for k, v in q.items()}
    kw = {k: dev[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    iv, st = implied_vol_triton(dev["price"], **kw)
    # correctness against the C++ core on the first million quotes
    m = min(n, 1 << 20)
    sub = {k: v[:m] for k, v in q.items()}
    cpu_kw = {k: sub[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    t0 = time.perf_counter()
    r = volfast.implied_vol(sub["price"], **cpu_kw, backend="cpp")
    t_cpp = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = volfast.implied_vol(sub["price"], **cpu_kw, backend="cpp")  # second call: no first-touch effects
    t_cpp = min(t_cpp, time.perf_counter() - t0)
    iv_c, st_c = iv[:m].cpu().numpy(), st[:m].cpu().numpy()
    assert np.array_equal(st_c, r.status), "implied vol: statuses differ from the C++ core"
    ok = r.status == 0
    market = {k: sub[k] for k in ("forward", "strike", "expiry_years", "discount_factor")}
    vega = volfast.black76_vega(**market, vol=np.where(ok, r.iv, 0.2))
    with np.errstate(all="ignore"):
        fl = 2.0**-52 * (r.iv + sub["price"] / vega)
        err = np.abs(iv_c - r.iv) / fl
    fin = ok & np.isfinite(fl) & (sub["price"] > 1e-290)  # the floor assumes a normal (not subnormal) price
    worst = float(np.max(err[fin]))
    assert worst <= 8.0, f"implied vol: {worst:.2f} floors from the C++ core"
    t_tri = _bench(lambda: implied_vol_triton(dev["price"], **kw)) * 1e-3
    return [
        {"impl": "triton float64 (GPU)", "quotes": n, "quotes/s": n / t_tri, "worst_vs_cpp_floors": worst},
        {"impl": f"C++ core ({os.cpu_count()} threads, CPU)", "quotes": m, "quotes/s": m / t_cpp,
         "worst_vs_cpp_floors": 0.0},
    ]  # fmt: skip


def table(dec: list[dict[str, Any]], iv: list[dict[str, Any]]) -> str:
    lines = [f"Kernels, {time.strftime('%Y-%m-%d')}. {provenance()}", ""]
    lines += [
        "| dtype | batch | eager ms | compile ms | triton ms | x eager | x compile | GB/s | % HBM peak |"
    ]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in dec:
        lines.append(
            f"| {r['dtype']} | {r['batch']:,} | {r['eager_ms']:.4f} | {r['compile_ms']:.4f} "
            f"| {r['triton_ms']:.4f} "
            f"| {r['x_eager']:.2f} | {r['x_compile']:.2f} | {r['GB/s']:.0f} | {r['%HBM']:.0f} |"
        )
    lines += [
        "",
        "| implied vol | quotes | quotes/s | worst vs C++ (floors) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in iv:
        lines.append(
            f"| {r['impl']} | {r['quotes']:,} | {r['quotes/s']:.3g} | {r['worst_vs_cpp_floors']:.2f} |"
        )
    if len(iv) == 2:
        lines += ["", f"GPU / CPU implied-vol throughput ratio: {iv[0]['quotes/s'] / iv[1]['quotes/s']:.1f}"]
    return "\n".join(lines)


def run(out: str | None = None) -> str | None:
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; skipped (run this on a GPU machine)")
        return None
    max_batch = int(os.environ.get("VOLFAST_BENCH_MAX_BATCH", str(1 << 22)))
    n_iv = int(os.environ.get("VOLFAST_BENCH_IV_QUOTES", str(1 << 24)))
    text = table(decoder_rows(max_batch), iv_rows(n_iv))
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    return text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernels_benchmark() -> None:
    assert run(os.environ.get("VOLFAST_BENCH_KERNELS_OUT")) is not None


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    run(args.out)
    sys.exit(0)
