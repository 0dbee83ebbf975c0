"""Black-76 pricing, Greeks and implied volatility."""

from volfast.iv.black76 import (
    IVResult,
    IVStatus,
    black76_delta,
    black76_gamma,
    black76_price,
    black76_vega,
    implied_vol,
)

__all__ = [
    "IVResult",
    "IVStatus",
    "black76_delta",
    "black76_gamma",
    "black76_price",
    "black76_vega",
    "implied_vol",
]
