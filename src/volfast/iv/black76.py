"""Public Black-76 API: vectorised price, Greeks and implied volatility.

Conventions (all functions): forward and strike in index points, ``expiry_years`` as an ACT/365 year
fraction, ``vol`` as a fraction (0.2 = 20%), a discount factor rather than a rate, ``is_call`` as bools
(or 0/1, or 'C'/'P'). Inputs broadcast against each other like numpy operands; outputs have the broadcast
shape. Bulk functions never raise per element: invalid quotes give NaN (and, for implied vol, a status).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from volfast._native import core, core_available, resolve_threads
from volfast.errors import UsageError

ArrayLike = Any


class IVStatus(enum.IntEnum):
    """Per-quote outcome of :func:`implied_vol` (stored as uint8)."""

    OK = 0  # the implied vol is in ``iv``
    BELOW_INTRINSIC = 1  # price below intrinsic value, or negative
    ABOVE_MAXIMUM = 2  # price at or above D*F (call) / D*K (put): no finite vol
    INVALID_INPUT = 3  # NaN/inf, or forward/strike/expiry/discount factor not > 0
    NO_CONVERGENCE = 4  # the solver did not settle (a guard; not expected)


class IVResult(NamedTuple):
    """Implied vols (float64, NaN where status != OK) and a uint8 status per quote."""

    iv: Any
    status: Any


BACKENDS = ("cpp", "numba", "reference", "triton")


def _as_float(name: str, value: ArrayLike) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind == "f":
        return a.astype(np.float64, copy=False)
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    raise TypeError(f"{name}: expected real numbers (float or int), got dtype {a.dtype}")


def as_is_call(value: ArrayLike) -> np.ndarray:
    """``is_call`` as booleans, the one reading every volfast function uses: booleans; 0/1 integers;
    ``"C"``/``"P"`` strings in any case (also ``"call"``/``"put"``), as a string array or object array.
    Anything else raises :class:`IsCallError` naming the first bad value (a string is never just "true").
    """
    a = np.asarray(value)
    if a.dtype == np.bool_:
        return a
    if a.size == 0:
        return a.astype(bool)
    if a.dtype.kind in "iu":
        bad = (a != 0) & (a != 1)
        if bad.any():
            first = a.reshape(-1)[bad.reshape(-1)][0]
            raise IsCallError(f"is_call: expected booleans, 0/1 or 'C'/'P', got {first!r}")
        return a != 0
    if a.dtype.kind == "O":
        flat = a.reshape(-1)
        if all(isinstance(x, (bool, np.bool_)) for x in flat):
            return a.astype(bool)
        if not all(isinstance(x, str) for x in flat):
            first = next(x for x in flat if not isinstance(x, (str, bool, np.bool_)))
            raise IsCallError(f"is_call: expected booleans or 'C'/'P', got {first!r}")
        a = a.astype(str)
    if a.dtype.kind in "US":
        up = np.char.upper(np.char.strip(a.astype("U")))
        up = np.where(up == "CALL", "C", np.where(up == "PUT", "P", up))
        bad = ~np.isin(up, ["C", "P"])
        if bad.any():
            first = a.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]]
            raise IsCallError(f"is_call: expected booleans or 'C'/'P', got {first!r}")
        return up == "C"
    raise IsCallError(f"is_call: expected booleans, 0/1 or 'C'/'P', got dtype {a.dtype}")


_as_is_call = as_is_call


class IsCallError(UsageError):
    """``is_call`` holds something that is neither a boolean nor 'C'/'P'."""


def _prepare(named: dict[str, np.ndarray]) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast to one shape and view each operand as 1-D (strided views kept; copies only for N-D)."""
    try:
        arrays = np.broadcast_arrays(*named.values())
    except ValueError:
        shapes = ", ".join(f"{k}{np.shape(v)}" for k, v in named.items())
        raise ValueError(f"inputs do not broadcast to a common shape: {shapes}") from None
    shape = arrays[0].shape
    flat = [a.reshape(-1) if a.ndim != 1 else a for a in arrays]
    return shape, flat


def _torch_in(*values: ArrayLike) -> Any:
    """Return the torch module if any input is a torch tensor (results then come back as tensors)."""
    for v in values:
        if type(v).__module__.startswith("torch"):
            import torch

            return torch
    return None


def _to_numpy(v: ArrayLike) -> ArrayLike:
    if type(v).__module__.startswith("torch"):
        return v.detach().cpu().numpy()
    return v


def _elementwise(
    fn_name: str, shape_args: dict[str, ArrayLike], with_call: ArrayLike | None, threads: int | None
) -> Any:
    torch = _torch_in(*shape_args.values(), with_call)
    named = {k: _as_float(k, _to_numpy(v)) for k, v in shape_args.items()}
    if with_call is not None:
        named["is_call"] = _as_is_call(_to_numpy(with_call))
    shape, flat = _prepare(named)
    fn: Callable[..., np.ndarray] = getattr(core().black76, fn_name)
    out = fn(**dict(zip(named, flat, strict=True)), threads=resolve_threads(threads)).reshape(shape)
    return torch.from_numpy(out) if torch is not None else out


def black76_price(
    *,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount_factor: ArrayLike = 1.0,
    threads: int | None = None,
) -> Any:
    """Black-76 option price ``D * (theta F Phi(theta d1) - theta K Phi(theta d2))``.

    Parameters
    ----------
    forward, strike : array_like
        Forward and strike, > 0, in index points.
    expiry_years : array_like
        Time to expiry in years (ACT/365), > 0.
    vol : array_like
        Black volatility as a fraction, >= 0.
    is_call : array_like of bool
        True for calls, False for puts (0/1 and 'C'/'P' accepted).
    discount_factor : array_like, default 1.0
        Discount factor to the premium payment date, > 0.
    threads : int, optional
        C++ threads; default ``VOLFAST_NUM_THREADS`` or all cores. Small inputs stay single-threaded.

    Returns
    -------
    ndarray of float64 with the broadcast shape; NaN where an input is invalid.
    """
    args = {
        "forward": forward,
        "strike": strike,
        "expiry_years": expiry_years,
        "vol": vol,
        "discount_factor": discount_factor,
    }
    return _elementwise("price", args, is_call, threads)


def black76_vega(
    *,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    discount_factor: ArrayLike = 1.0,
    threads: int | None = None,
) -> Any:
    """Vega ``dPrice/dvol`` per unit of vol (divide by 100 for per vol point); same for calls and puts."""
    args = {
        "forward": forward,
        "strike": strike,
        "expiry_years": expiry_years,
        "vol": vol,
        "discount_factor": discount_factor,
    }
    return _elementwise("vega", args, None, threads)


def black76_delta(
    *,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    discount_factor: ArrayLike = 1.0,
    threads: int | None = None,
) -> Any:
    """Forward delta ``dPrice/dF = D theta Phi(theta d1)`` (futures hedge ratio before the multiplier)."""
    args = {
        "forward": forward,
        "strike": strike,
        "expiry_years": expiry_years,
        "vol": vol,
        "discount_factor": discount_factor,
    }
    return _elementwise("delta", args, is_call, threads)


def black76_gamma(
    *,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    discount_factor: ArrayLike = 1.0,
    threads: int | None = None,
) -> Any:
    """Forward gamma ``d2Price/dF2 = D phi(d1) / (F vol sqrt(T))``; same for calls and puts."""
    args = {
        "forward": forward,
        "strike": strike,
        "expiry_years": expiry_years,
        "vol": vol,
        "discount_factor": discount_factor,
    }
    return _elementwise("gamma", args, None, threads)


def _cuda_device(values: tuple[ArrayLike, ...]) -> Any:
    """The device of the first CUDA torch tensor among the inputs, else None."""
    for v in values:
        if type(v).__module__.startswith("torch") and getattr(v, "is_cuda", False):
            return v.device
    return None


def _triton_usable() -> bool:
    """Triton importable and a CUDA GPU with a driver present (not merely ``import triton``)."""
    try:
        import torch
        import triton  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _choose_backend(backend: str | None, values: tuple[ArrayLike, ...] = ()) -> str:
    if backend is None or backend == "auto":
        if _cuda_device(values) is not None and _triton_usable():
            return "triton"
        if core_available():
            return "cpp"
        return "numba"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "cpp":
        core()  # explicit request: raise with build instructions if missing
    if backend == "triton":
        import os

        interpreting = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
        if _cuda_device(values) is None and not interpreting:
            raise ValueError(
                "backend='triton' needs the quotes as CUDA torch tensors (price or another input on a GPU); "
                "use backend='cpp' for numpy arrays or CPU tensors"
            )
        if not interpreting and not _triton_usable():
            raise RuntimeError(
                "backend='triton' is unavailable: needs the triton package and a CUDA GPU with a driver"
            )
    return backend


def _implied_vol_triton(price: ArrayLike, named_raw: dict[str, ArrayLike], is_call: ArrayLike) -> IVResult:
    """Dispatch to the Triton kernel; non-tensor inputs are moved to the device of the tensor ones."""
    import torch

    from volfast.kernels.implied_vol import implied_vol_triton

    values = (price, *named_raw.values(), is_call)
    device = _cuda_device(values)
    if device is None:  # interpreter (tests): the device of any tensor, else the CPU
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))

    def as_tensor(v: ArrayLike) -> Any:
        return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v), device=device)

    if isinstance(is_call, torch.Tensor):
        call = is_call
    else:
        call = torch.as_tensor(_as_is_call(is_call), device=device)
    iv, status = implied_vol_triton(
        as_tensor(price), **{k: as_tensor(v) for k, v in named_raw.items()}, is_call=call
    )
    return IVResult(iv, status)


def implied_vol(
    price: ArrayLike,
    *,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    is_call: ArrayLike,
    discount_factor: ArrayLike = 1.0,
    backend: str | None = None,
    threads: int | None = None,
) -> IVResult:
    """Black-76 implied volatility of option prices, with a status per quote.

    Parameters
    ----------
    price : array_like
        Option premium in index points (the same units as forward and strike).
    forward, strike : array_like
        > 0, index points.
    expiry_years : array_like
        Time to expiry in years (ACT/365), > 0.
    is_call : array_like of bool
        True for calls, False for puts (0/1 and 'C'/'P' accepted).
    discount_factor : array_like, default 1.0
        > 0.
    backend : {None, 'cpp', 'numba', 'reference', 'triton'}
        None picks the Triton kernel when an input is a CUDA tensor and a GPU is usable, else the C++ core,
        falling back to Numba if the extension is missing. An explicit backend that is unavailable raises;
        'triton' needs CUDA torch tensors and returns tensors on that device.
    threads : int, optional
        C++ threads; default ``VOLFAST_NUM_THREADS`` or all cores.

    Returns
    -------
    IVResult(iv, status)
        ``iv`` float64 vols (fractions), NaN wherever ``status != IVStatus.OK``; ``status`` uint8 codes from
        :class:`IVStatus`. A price exactly at intrinsic value gives vol 0 with status OK.

    Notes
    -----
    Accuracy: within a few times the attainable floor ``2**-52 * (vol + price / vega)`` over vols 1e-3..5,
    ``|ln(K/F)| <= 5 sqrt(T)``, expiries from an hour to 30 years (see
    ``cpp/include/volfast/implied_vol.hpp``).
    """
    chosen = _choose_backend(backend, (price, forward, strike, expiry_years, is_call, discount_factor))
    if chosen == "triton":
        raw = {
            "forward": forward,
            "strike": strike,
            "expiry_years": expiry_years,
            "discount_factor": discount_factor,
        }
        return _implied_vol_triton(price, raw, is_call)
    torch = _torch_in(price, forward, strike, expiry_years, is_call, discount_factor)
    named = {
        "price": _as_float("price", _to_numpy(price)),
        "forward": _as_float("forward", _to_numpy(forward)),
        "strike": _as_float("strike", _to_numpy(strike)),
        "expiry_years": _as_float("expiry_years", _to_numpy(expiry_years)),
        "is_call": _as_is_call(_to_numpy(is_call)),
        "discount_factor": _as_float("discount_factor", _to_numpy(discount_factor)),
    }
    shape, flat = _prepare(named)
    if chosen == "cpp":
        iv, status = core().black76.implied_vol(
            **dict(zip(named, flat, strict=True)), threads=resolve_threads(threads)
        )
    elif chosen == "numba":
        from volfast.iv import _numba

        iv, status = _numba.implied_vol_array(*(np.ascontiguousarray(a) for a in flat))
    else:
        from volfast.iv import _reference

        iv, status = _reference.implied_vol(*flat)
    iv, status = iv.reshape(shape), status.reshape(shape)
    if torch is not None:
        return IVResult(torch.from_numpy(iv), torch.from_numpy(status))
    return IVResult(iv, status)
