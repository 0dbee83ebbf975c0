"""volfast: implied-volatility surfaces from raw option market data, fast; and a latent world model on top.

The fast primitives live at the top level::

    import volfast
    volfast.black76_price(forward=100.0, strike=100.0, expiry_years=0.5, vol=0.2, is_call=True)
    volfast.implied_vol(price, forward=F, strike=K, expiry_years=T, is_call=is_call)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from volfast.errors import UsageError, VolfastError
from volfast.iv import (
    IVResult,
    IVStatus,
    black76_delta,
    black76_gamma,
    black76_price,
    black76_vega,
    implied_vol,
)
from volfast.snapshot import take_snapshot

if TYPE_CHECKING:
    from volfast.forward import ForwardFit, ForwardStatus, implied_forward
    from volfast.svi import SVIFit, SVIStatus, fit_svi, svi_g

# The Numba-backed primitives load on first use: `import volfast` (and every CLI command) need not import
# Numba and its compiled-kernel caches (~0.2 s) to price an option or read a file.
_LAZY = {
    "ForwardFit": "volfast.forward",
    "ForwardStatus": "volfast.forward",
    "implied_forward": "volfast.forward",
    "SVIFit": "volfast.svi",
    "SVIStatus": "volfast.svi",
    "fit_svi": "volfast.svi",
    "svi_g": "volfast.svi",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'volfast' has no attribute {name!r}")


try:
    __version__ = version("volfast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "ForwardFit",
    "ForwardStatus",
    "IVResult",
    "IVStatus",
    "SVIFit",
    "SVIStatus",
    "UsageError",
    "VolfastError",
    "__version__",
    "black76_delta",
    "black76_gamma",
    "black76_price",
    "black76_vega",
    "fit_svi",
    "implied_forward",
    "implied_vol",
    "svi_g",
    "take_snapshot",
]
