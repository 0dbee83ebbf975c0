"""Triton kernels (volfast.kernels): the fused MLP decoder against torch, the float64 implied-vol kernel
against the C++ core and 40-digit mpmath, and every bad input. Without a GPU they run in Triton's CPU
interpreter (TRITON_INTERPRET=1, set in conftest.py before triton is imported), on small shapes; the tests
marked ``gpu`` run only where CUDA is present. Inputs are fresh random draws each run (the seed is in the
failure message), and outputs are poisoned before each run so an element the kernel fails to write fails."""

from __future__ import annotations

import os

if not os.path.exists("/dev/nvidiactl"):  # before triton is imported (also done in conftest.py)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import pytest
import torch

import volfast
from volfast.iv import _reference as ref

from ._iv_domain import accuracy_domain, floor

pytest.importorskip("triton")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from volfast.kernels import implied_vol as kiv  # noqa: E402
from volfast.kernels import mlp_decoder as kmlp  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
needs_kernels = pytest.mark.skipif(not (HAS_CUDA or INTERPRET), reason="no GPU and TRITON_INTERPRET unset")

pytestmark = needs_kernels


def _seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**32)


@pytest.fixture()
def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs start as NaN (floats) / 0xEE (status) so any element the kernel leaves unwritten fails."""

    def empty(shape, dtype, device):  # type: ignore[no-untyped-def]
        if dtype.is_floating_point:
            return torch.full(shape, float("nan"), dtype=dtype, device=device)
        return torch.full(shape, 0xEE, dtype=dtype, device=device)

    monkeypatch.setattr(kiv, "_empty", empty)
    monkeypatch.setattr(kmlp, "_empty", empty)


# ---- special functions ----------------------------------------------------------------------------------
@triton.jit
def _erf_probe_kernel(x_ptr, erfc_ptr, erfcx_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    x = tl.load(x_ptr + o, mask=m, other=0.0)
    tl.store(erfc_ptr + o, kiv._erfc(x), mask=m)
    tl.store(erfcx_ptr + o, kiv._erfcx_nonneg(tl.abs(x)), mask=m)


def test_erfc_erfcx_accuracy() -> None:
    """Our Cody-based erfc (on [-6, 26.5]) and erfcx (on [0, 1e6]) within 4 ulp of 40-digit mpmath."""
    import mpmath as mp

    rng = np.random.default_rng(_seed())
    x = np.concatenate(
        [rng.uniform(-6, 26.5, 120), rng.uniform(0, 0.5, 30), np.exp(rng.uniform(0, np.log(1e6), 30)),
         [0.0, 0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5), -0.46875, 1e-300]]
    )  # fmt: skip
    xt = torch.from_numpy(x).to(DEVICE)
    a, b = torch.full_like(xt, np.nan), torch.full_like(xt, np.nan)
    with np.errstate(all="ignore"):
        _erf_probe_kernel[(triton.cdiv(len(x), 64),)](xt, a, b, len(x), BLOCK=64)
    a, b = a.cpu().numpy(), b.cpu().numpy()
    with mp.workdps(40):
        for xi, ai, bi in zip(x, a, b, strict=True):
            exact = mp.erfc(mp.mpf(xi))
            assert abs(ai - float(exact)) <= 4 * 2**-52 * float(exact), (xi, ai, float(exact))
            ax = mp.mpf(abs(xi))
            exact_x = mp.exp(ax * ax) * mp.erfc(ax)
            assert abs(bi - float(exact_x)) <= 4 * 2**-52 * float(exact_x), (xi, bi, float(exact_x))
    # special values: erfc(+inf) = 0, erfc(-inf) = 2, erfcx(inf) = 0
    xs = torch.tensor([np.inf, -np.inf, 30.0], dtype=torch.float64, device=DEVICE)
    a, b = torch.empty_like(xs), torch.empty_like(xs)
    with np.errstate(all="ignore"):
        _erf_probe_kernel[(1,)](xs, a, b, 3, BLOCK=4)
    assert a.cpu().tolist() == [0.0, 2.0, 0.0]
    assert b.cpu()[0] == 0.0 and b.cpu()[2] == pytest.approx(float(mp.exp(900) * mp.erfc(30)), rel=1e-15)


# ---- implied vol -------------------------------------------------------------------------------------------
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a)).to(DEVICE)


def _iv_both(price, d):  # type: ignore[no-untyped-def]
    kw = {k: d[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    iv, st = kiv.implied_vol_triton(_t(price), **{k: _t(v) for k, v in kw.items()})
    r = volfast.implied_vol(price, **kw, backend="cpp")
    return iv.cpu().numpy(), st.cpu().numpy(), r


def test_iv_matches_cpp_on_mixed_domain(poison: None) -> None:
    """Vols 1e-3..5, expiries 1h..30y, ln(K/F) in [-5, 3] sqrt(T): statuses equal, vols within the floor."""
    seed = _seed()
    d = accuracy_domain(256, seed)
    price = volfast.black76_price(**d)
    iv, st, r = _iv_both(price, d)
    diff = np.flatnonzero(st != r.status)
    assert diff.size == 0, (
        f"seed {seed}: statuses differ at {diff[:5]}: triton {st[diff[:5]]}, C++ {r.status[diff[:5]]}"
    )
    ok = r.status == 0
    assert ok.sum() > 200
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    fl = floor(r.iv, price, vega)
    # Both solvers are within ~3 floors of the truth: allow 8 between them. The floor assumes a price with
    # full precision: below 1e-290 (subnormal, or vega 0) it does not hold, and there the two need only agree
    # to 1e-7 relative (seen: up to 6e-9; mpmath puts both about that far from the rounded price's vol).
    err = np.abs(iv[ok] - r.iv[ok])
    fin = np.isfinite(fl[ok]) & (price[ok] > 1e-290)
    worst = np.max(err[fin] / fl[ok][fin])
    assert worst <= 8.0, f"seed {seed}: worst {worst:.2f} floors"
    assert np.all(err[~fin] <= 1e-7 * r.iv[ok][~fin]), f"seed {seed}"
    assert np.all(np.isnan(iv[~ok]))


def test_iv_against_exact_prices() -> None:
    """Prices at 40 digits, rounded once: the kernel's vol is within a few floors of the true one."""
    seed = _seed()
    d = accuracy_domain(40, seed)
    truth = np.array(
        [float(ref.price_mp(*(d[k][i] for k in ("forward", "strike", "expiry_years", "vol", "is_call",
                                                 "discount_factor")))) for i in range(40)]
    )  # fmt: skip
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    upper = np.where(d["is_call"], d["forward"], d["strike"]) * d["discount_factor"]
    theta = np.where(d["is_call"], 1.0, -1.0)
    intrinsic = d["discount_factor"] * np.maximum(theta * (d["forward"] - d["strike"]), 0.0)
    # as in test_implied_vol: a deep-ITM price rounded onto (or below) the intrinsic value has no vol to find
    usable = (truth > 1e-290) & (vega > 0) & (truth > intrinsic) & (truth < 0.999 * upper)
    iv, st, _ = _iv_both(truth, d)
    assert np.all(st[usable] == 0), f"seed {seed}"
    err = np.abs(iv[usable] - d["vol"][usable]) / floor(d["vol"], truth, vega)[usable]
    assert np.max(err) <= 6.0, f"seed {seed}: worst {np.max(err):.2f} floors"


def test_iv_published_value() -> None:
    iv, st = kiv.implied_vol_triton(
        _t([6.54635543387]), forward=_t([100.0]), strike=_t([100.0]), expiry_years=_t([0.5]),
        is_call=_t([True]), discount_factor=_t([1.0]),
    )  # fmt: skip
    assert int(st[0]) == 0
    assert float(iv[0]) == pytest.approx(0.2323232320000792, rel=1e-14)


def test_iv_boundary_and_status_cases(poison: None) -> None:
    """Every status code and edge, in the same positions as the C++ core (vol 0 at intrinsic, NaN else)."""
    nan, inf = float("nan"), float("inf")
    rows = [
        # price, F, K, T, call, D
        (5.0, 100.0, 100.0, 0.5, True, 1.0),  # ok
        (20.0, 120.0, 100.0, 0.5, True, 1.0),  # exactly intrinsic -> vol 0, ok
        (19.0, 120.0, 100.0, 0.5, True, 1.0),  # below intrinsic
        (-1.0, 100.0, 120.0, 0.5, True, 1.0),  # negative
        (100.0, 100.0, 90.0, 0.5, True, 1.0),  # at the upper bound D*F
        (95.0, 100.0, 95.0, 0.5, False, 1.0),  # put at D*K
        (nan, 100.0, 100.0, 0.5, True, 1.0),  # NaN price
        (5.0, inf, 100.0, 0.5, True, 1.0),  # inf forward
        (5.0, 100.0, 0.0, 0.5, True, 1.0),  # zero strike
        (5.0, 100.0, 100.0, -1.0, True, 1.0),  # negative expiry
        (5.0, 100.0, 100.0, 0.5, True, 0.0),  # zero discount factor
        (1e-300, 100.0, 200.0, 0.01, True, 1.0),  # time value far below anything: tiny or zero vol
        (5e-324, 100.0, 100.0, 1.0, False, 1.0),  # denormal time value at the money
        (99.999999, 100.0, 100.0, 1.0, True, 1.0),  # near the maximum: huge vol
        (1e-3, 100.0, 100.0 * np.exp(1e-12), 1.0 / 8760.0, True, 0.99),  # ATM, tiny |x|, one hour
        (30.0, 4000.0, 5000.0, 2.0, False, 0.9),  # put ITM-ish below intrinsic (900 * 0.9 = 810 > 30)
        (850.0, 4000.0, 5000.0, 2.0, False, 0.9),  # put above intrinsic
        (1e-8, 4000.0, 8000.0, 0.05, True, 1.0),  # deep OTM short
    ]
    cols = list(zip(*rows, strict=True))
    d = {
        "forward": np.array(cols[1]), "strike": np.array(cols[2]), "expiry_years": np.array(cols[3]),
        "is_call": np.array(cols[4]), "discount_factor": np.array(cols[5]),
    }  # fmt: skip
    price = np.array(cols[0])
    iv, st, r = _iv_both(price, d)
    assert st.tolist() == r.status.tolist()
    assert set(st.tolist()) >= {0, 1, 2, 3}
    ok = st == 0
    np.testing.assert_array_equal(np.isnan(iv), ~ok)
    assert iv[1] == 0.0
    np.testing.assert_allclose(iv[ok], r.iv[ok], rtol=1e-13, atol=0)


def test_iv_strided_broadcast_and_dtypes(poison: None) -> None:
    """Stride-0 broadcasts, non-contiguous views, float32 and integer inputs (widened exactly)."""
    d = accuracy_domain(48, _seed())
    price = volfast.black76_price(**d)
    big = torch.zeros(96, dtype=torch.float64)
    big[::2] = torch.from_numpy(price)
    strided = big.to(DEVICE)[::2]  # non-contiguous
    assert not strided.is_contiguous()
    iv, st = kiv.implied_vol_triton(
        strided, forward=_t(d["forward"]), strike=_t(d["strike"]), expiry_years=_t(d["expiry_years"]),
        is_call=_t(d["is_call"]), discount_factor=torch.tensor(1.0, dtype=torch.float64, device=DEVICE),
    )  # fmt: skip
    r = volfast.implied_vol(price, **{k: d[k] for k in ("forward", "strike", "expiry_years", "is_call")})
    assert st.cpu().numpy().tolist() == r.status.tolist()
    np.testing.assert_allclose(iv.cpu().numpy(), r.iv, rtol=1e-12)
    # float32 / int inputs: the value they hold, exactly
    iv32, st32 = kiv.implied_vol_triton(
        _t(np.float32(4.0)), forward=_t(np.int32([100, 110])), strike=_t(np.float32(100.0)),
        expiry_years=_t(0.25), is_call=_t(np.int8([1, 0])), discount_factor=_t(1.0),
    )  # fmt: skip
    r32 = volfast.implied_vol(
        4.0, forward=[100.0, 110.0], strike=100.0, expiry_years=0.25, is_call=[True, False]
    )
    assert st32.cpu().tolist() == r32.status.tolist() and iv32.dtype == torch.float64
    np.testing.assert_allclose(iv32.cpu().numpy(), r32.iv, rtol=1e-13)


def test_iv_int64_offsets_in_strided_input() -> None:
    """An input whose elements lie 2^31 apart: offsets are computed in int64 (the buffer is 2 GiB virtual,
    two pages touched)."""
    try:
        buf = torch.empty(2**31 + 8, dtype=torch.uint8, device=DEVICE)
    except RuntimeError:
        pytest.skip("cannot reserve 2 GiB of address space")
    buf[0], buf[2**31] = 1, 0
    is_call = buf.as_strided((2,), (2**31,))
    iv, st = kiv.implied_vol_triton(
        _t([4.0, 4.0]), forward=_t([100.0, 100.0]), strike=_t([100.0, 102.0]), expiry_years=_t(0.25),
        is_call=is_call, discount_factor=_t(1.0),
    )  # fmt: skip
    r = volfast.implied_vol(
        4.0, forward=100.0, strike=[100.0, 102.0], expiry_years=0.25, is_call=[True, False]
    )
    assert st.tolist() == [0, 0]
    np.testing.assert_allclose(iv.cpu().numpy(), r.iv, rtol=1e-13)


def test_iv_bad_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    one = torch.tensor([1.0], dtype=torch.float64, device=DEVICE)
    kw = {"forward": one * 100, "strike": one * 100, "expiry_years": one, "is_call": one > 0,
          "discount_factor": one}  # fmt: skip
    with pytest.raises(TypeError, match="price: expected real numbers"):
        kiv.implied_vol_triton(torch.tensor([1 + 1j]), **kw)
    with pytest.raises(TypeError, match="is_call"):
        kiv.implied_vol_triton(one, **{**kw, "is_call": one})
    with pytest.raises(TypeError, match="forward: expected a torch.Tensor"):
        kiv.implied_vol_triton(one, **{**kw, "forward": 100.0})
    with pytest.raises(ValueError, match="broadcast"):
        kiv.implied_vol_triton(one.expand(3), **{**kw, "strike": one.expand(2) * 100})
    iv, st = kiv.implied_vol_triton(one[:0], **kw)  # empty batch
    assert iv.shape == (0,) and st.shape == (0,) and st.dtype == torch.uint8
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # as on a machine without the interpreter: CPU is refused
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        kiv.implied_vol_triton(one.cpu(), **{k: v.cpu() for k, v in kw.items()})


def test_public_implied_vol_triton_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """``volfast.implied_vol(..., backend="triton")`` reaches the kernel; without CUDA it raises clearly."""
    d = accuracy_domain(32, _seed())
    price = volfast.black76_price(**d)
    kw = {k: d[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    r = volfast.implied_vol(price, **kw)
    rt = volfast.implied_vol(_t(price), **{k: _t(v) for k, v in kw.items()}, backend="triton")
    assert isinstance(rt.iv, torch.Tensor) and rt.iv.device.type == DEVICE
    assert rt.status.cpu().numpy().tolist() == r.status.tolist()
    # same algorithm, not the same rounding (C++ batched SIMD stage vs the kernel's scalar port): compare in
    # floors, as test_implied_vol_matches_cpp does
    ok = (r.status == 0) & (price > 1e-290)  # the floor needs a full-precision price (see above)
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    gap = np.abs(rt.iv.cpu().numpy()[ok] - r.iv[ok]) / floor(r.iv, price, vega)[ok]
    assert np.all(gap <= 8.0), f"worst {gap.max():.2f} floors"
    # scalars and 'C'/'P' strings mix with tensors
    rs = volfast.implied_vol(_t(price[:3]), forward=d["forward"][:3], strike=d["strike"][:3],
                             expiry_years=d["expiry_years"][:3], is_call=np.where(d["is_call"][:3], "C", "P"),
                             discount_factor=d["discount_factor"][:3], backend="triton")  # fmt: skip
    np.testing.assert_allclose(rs.iv.cpu().numpy(), r.iv[:3], rtol=1e-12)
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="backend='triton' needs the quotes as CUDA torch tensors"):
            volfast.implied_vol(price, **kw, backend="triton")
        # auto never picks triton for CPU data
        ra = volfast.implied_vol(torch.from_numpy(price), **kw)
        assert ra.iv.device.type == "cpu"
        np.testing.assert_array_equal(ra.iv.numpy(), r.iv)


# ---- fused MLP decoder -------------------------------------------------------------------------------
def _cvae_decoder(seed: int, sizes=(7, 48, 48, 33)) -> torch.nn.Sequential:  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        mods.append(torch.nn.SiLU() if i < len(sizes) - 2 else torch.nn.Softplus())
    return torch.nn.Sequential(*mods).to(DEVICE)


def _close(out: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    """Relative to each element and to the output's scale (so values near 0 do not dominate)."""
    o, w = out.float().cpu(), want.float().cpu()
    tol = rtol * (w.abs() + w.abs().max())
    bad = (o - w).abs() > tol
    assert not bad.any(), (
        f"{int(bad.sum())} elements off; worst {float(((o - w).abs() / tol).max()):.2f} x tol"
    )
    assert torch.isfinite(o).all()


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_decoder_default_cvae(dtype: torch.dtype, rtol: float, poison: None) -> None:
    seed = _seed()
    dec = _cvae_decoder(seed)
    layers = kmlp.layers_from_module(dec)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(77, 7, generator=g).to(DEVICE, dtype)  # 77: a ragged last tile
    scale = (torch.rand(33, generator=g) + 0.5).to(DEVICE)
    shift = (torch.randn(33, generator=g) * 0.1).to(DEVICE)
    out = kmlp.fused_mlp_decoder(x, layers, out_scale=scale, out_shift=shift)
    want = kmlp.fused_mlp_decoder_reference(x, layers, out_scale=scale, out_shift=shift)
    assert out.shape == (77, 33) and out.dtype == dtype
    _close(out, want, rtol)
    if dtype == torch.float32:  # and the module itself
        with torch.no_grad():
            _close(kmlp.fused_mlp_decoder(x, layers), dec(x), rtol)


@pytest.mark.parametrize(
    ("sizes", "hidden", "out_act"),
    [
        ((5, 17, 3), "silu", "softplus"),  # 2 layers, odd sizes
        ((4, 16, 40, 24, 9), "relu", "none"),  # 4 layers
        ((6, 300), "silu", "silu"),  # 1 layer, wide output: 3 column chunks (a conv decoder's dense stem)
        ((3, 64, 130), "silu", "relu"),  # chunked output after a hidden layer
    ],
)
def test_decoder_shapes_and_activations(sizes, hidden, out_act, poison: None) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(_seed())
    layers = [
        ((torch.randn(sizes[i + 1], sizes[i], generator=g) / sizes[i] ** 0.5).to(DEVICE),
         (torch.randn(sizes[i + 1], generator=g) * 0.1).to(DEVICE))
        for i in range(len(sizes) - 1)
    ]  # fmt: skip
    x = torch.randn(33, sizes[0], generator=g).to(DEVICE)
    kw = {"hidden_activation": hidden, "output_activation": out_act}
    out = kmlp.fused_mlp_decoder(x, layers, **kw, precision="ieee")
    _close(out, kmlp.fused_mlp_decoder_reference(x, layers, **kw), 1e-5)
    out16 = kmlp.fused_mlp_decoder(x.bfloat16(), layers, **kw, out_dtype=torch.float32)
    assert out16.dtype == torch.float32
    _close(out16, kmlp.fused_mlp_decoder_reference(x.bfloat16(), layers, **kw, out_dtype=torch.float32), 2e-2)


def test_decoder_noncontiguous_and_softplus_tails(poison: None) -> None:
    """A strided x (a column slice of [z, y, extra]) and pre-activations far in both softplus tails."""
    dec = _cvae_decoder(_seed(), sizes=(7, 16, 5))
    wide = torch.randn(20, 10, device=DEVICE)
    x = wide[:, 1:8]
    assert not x.is_contiguous()
    layers = kmlp.layers_from_module(dec)
    _close(kmlp.fused_mlp_decoder(x, layers), kmlp.fused_mlp_decoder_reference(x, layers), 1e-5)
    # last-layer bias of -30 / +30: softplus ~ 1e-13 (relative accuracy kept) and the identity branch
    layers2 = [layers[0], (torch.zeros(2, 16, device=DEVICE), torch.tensor([-30.0, 30.0], device=DEVICE))]
    out = kmlp.fused_mlp_decoder(x, layers2)
    want = torch.nn.functional.softplus(torch.tensor([-30.0, 30.0])).expand(20, 2)
    torch.testing.assert_close(out.cpu(), want, rtol=1e-6, atol=0)


def test_decoder_bad_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    dec = _cvae_decoder(0)
    layers = kmlp.layers_from_module(dec)
    x = torch.randn(4, 7, device=DEVICE)
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        kmlp.fused_mlp_decoder(x.double(), layers)
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        kmlp.fused_mlp_decoder(x.long(), layers)
    with pytest.raises(ValueError, match=r"shape \(B, D_in\)"):
        kmlp.fused_mlp_decoder(x[0], layers)
    with pytest.raises(ValueError, match=r"layers\[0\]: weight has shape \(48, 7\).*input is 6 wide"):
        kmlp.fused_mlp_decoder(x[:, :6], layers)
    with pytest.raises(ValueError, match=r"layers\[1\]: weight has shape"):
        kmlp.fused_mlp_decoder(x, [layers[0], layers[0]])
    with pytest.raises(ValueError, match=r"layers\[2\]: bias must have shape \(33,\)"):
        kmlp.fused_mlp_decoder(x, [layers[0], layers[1], (layers[2][0], layers[2][1][:-1])])
    with pytest.raises(ValueError, match="1 to 4"):
        kmlp.fused_mlp_decoder(x, [])
    with pytest.raises(ValueError, match="hidden width 300 exceeds 256"):
        big = [(torch.ones(300, 7), torch.ones(300)), (torch.ones(2, 300), torch.ones(2))]
        kmlp.fused_mlp_decoder(x, [(w.to(DEVICE), b.to(DEVICE)) for w, b in big])
    with pytest.raises(ValueError, match="out_scale: expected shape"):
        kmlp.fused_mlp_decoder(x, layers, out_scale=torch.ones(32, device=DEVICE))
    with pytest.raises(ValueError, match="hidden_activation"):
        kmlp.fused_mlp_decoder(x, layers, hidden_activation="gelu")
    with pytest.raises(TypeError, match="out_dtype"):
        kmlp.fused_mlp_decoder(x, layers, out_dtype=torch.float64)
    empty = kmlp.fused_mlp_decoder(x[:0], layers)
    assert empty.shape == (0, 33)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        kmlp.fused_mlp_decoder(x.cpu(), [(w.cpu(), b.cpu()) for w, b in layers])


def test_decoder_weights_beyond_shared_memory_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # the guard's count of staged weights (a lower bound of the compiler's shared memory, equal to it for
    # 16 -> 256 -> 256 -> 300 on sm_90: 800 KiB in float32 tf32x3, 200 in bf16; kernels/aot.py): 72 KiB for
    # the default CVAE decoder in float32 tf32x3 (the compiler adds a 16 KiB activation tile: 88)
    assert kmlp.staged_weight_bytes([16, 64, 64, 16], 2, 64, torch.float32, "tf32x3") == 72 * 1024
    assert kmlp.staged_weight_bytes([16, 256, 256, 16], 2, 128, torch.float32, "tf32x3") == 800 * 1024
    assert kmlp.staged_weight_bytes([16, 256, 256, 16], 2, 128, torch.bfloat16, "tf32") == 200 * 1024
    monkeypatch.setattr(kmlp, "_shared_limit", lambda device: 227 * 1024)  # an H200, here
    x = torch.randn(4, 7, device=DEVICE)
    big = [
        (torch.randn(256, 7), torch.randn(256)),
        (torch.randn(256, 256), torch.randn(256)),
        (torch.randn(300, 256), torch.randn(300)),
    ]
    big = [(w.to(DEVICE), b.to(DEVICE)) for w, b in big]
    msg = r"7 -> 256 -> 256 -> 300 decoder in torch.float32 \(tf32x3\) stages 800 KiB .* allows 227 KiB"
    with pytest.raises(kmlp.DecoderTooLarge, match=msg):
        kmlp.fused_mlp_decoder(x, big)
    with pytest.raises(kmlp.DecoderTooLarge, match="stages 400 KiB"):  # ieee: half, still too much
        kmlp.fused_mlp_decoder(x, big, precision="ieee")
    layers = kmlp.layers_from_module(_cvae_decoder(0))  # the default decoder fits and runs
    got = kmlp.fused_mlp_decoder(x, layers)
    torch.testing.assert_close(got, kmlp.fused_mlp_decoder_reference(x, layers), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(HAS_CUDA, reason="compiles on a machine without a GPU; with one, the gpu tests run")
def test_kernels_compile_for_the_h200() -> None:
    # the real compiler (not the interpreter) on the quick variants, for sm_90, with Triton's bundled ptxas
    import json
    import subprocess
    import sys
    from pathlib import Path

    from volfast.kernels.aot import QUICK

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("Triton's NVIDIA backend (ptxas) is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "volfast.kernels.aot", "--arch", "90", "--json", "--quick"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0 and len(recs) == len(QUICK), r.stdout + r.stderr
    assert all(x["ok"] and x["cubin_bytes"] > 0 for x in recs), recs
    for x in recs:
        if x["staged_weight_bytes"] is not None:  # the guard's count never exceeds the compiler's
            assert x["staged_weight_bytes"] <= x["shared_bytes"], x
    default = next(x for x in recs if "7x48x48->33" in x["name"])
    assert default["staged_weight_bytes"] == 72 * 1024 and default["shared_bytes"] <= 227 * 1024  # fits


def test_layers_from_module() -> None:
    nn = torch.nn
    pairs = kmlp.layers_from_module(_cvae_decoder(1))
    assert [tuple(w.shape) for w, _ in pairs] == [(48, 7), (48, 48), (33, 48)]
    assert kmlp.layers_from_module(nn.Sequential(nn.Linear(3, 4)), output_activation="none")[0][1].shape == (
        4,
    )
    with pytest.raises(ValueError, match="expected SiLU between"):
        kmlp.layers_from_module(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Softplus()))
    with pytest.raises(ValueError, match="expected Softplus"):
        kmlp.layers_from_module(nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="beta=2"):
        kmlp.layers_from_module(
            nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2), nn.Softplus(beta=2))
        )
    with pytest.raises(ValueError, match="expected nn.Linear"):
        kmlp.layers_from_module(nn.Sequential(nn.SiLU(), nn.Linear(4, 2), nn.Softplus()))
    with pytest.raises(TypeError, match="nn.Sequential"):
        kmlp.layers_from_module(nn.Linear(3, 4))
    no_bias = kmlp.layers_from_module(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Softplus()))
    assert float(no_bias[0][1].abs().sum()) == 0.0


# ---- GPU only ----------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_gpu
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_decoder_large_batch(dtype: torch.dtype) -> None:
    dec = _cvae_decoder(_seed())
    layers = kmlp.layers_from_module(dec)
    x = torch.randn(1_000_003, 7, device="cuda", dtype=dtype)
    out = kmlp.fused_mlp_decoder(x, layers)
    _close(out, kmlp.fused_mlp_decoder_reference(x, layers), 1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.slow
def test_gpu_more_than_2_31_elements() -> None:
    """Outputs beyond 2^31 elements (int64 offsets): decoder rows 65.1M x 33 in bf16, 2^31 + 5 quotes."""
    dec = _cvae_decoder(0)
    layers = kmlp.layers_from_module(dec)
    rows = 2**31 // 33 + 1000
    x1 = torch.randn(2, 7, device="cuda", dtype=torch.bfloat16)
    x = x1[:1].expand(rows, 7)  # stride-0 rows: no 1 GB input needed
    out = kmlp.fused_mlp_decoder(x, layers)
    want = kmlp.fused_mlp_decoder_reference(x1[:1], layers)
    _close(out[-1:], want, 1e-2)
    _close(out[:1], want, 1e-2)
    del out
    n = 2**31 + 5
    one = torch.ones(1, dtype=torch.float64, device="cuda")
    iv, st = kiv.implied_vol_triton(
        (one * 4.0).expand(n), forward=one * 100, strike=one * 100, expiry_years=one * 0.25,
        is_call=torch.ones(1, dtype=torch.bool, device="cuda"), discount_factor=one,
    )  # fmt: skip
    r = volfast.implied_vol(4.0, forward=100.0, strike=100.0, expiry_years=0.25, is_call=True)
    assert int(st[-1]) == 0 and float(iv[-1]) == pytest.approx(float(r.iv), rel=1e-14)
    assert int(st.max()) == 0
