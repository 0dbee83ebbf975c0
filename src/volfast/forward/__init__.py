"""Forwards and discount factors per expiry: put-call parity regression, box spreads, pooled curve,
optional Bayesian posterior."""

from volfast.forward.core import (
    ForwardFit,
    ForwardStatus,
    OptionChains,
    implied_forward,
    option_chains,
)

__all__ = [
    "ForwardFit",
    "ForwardStatus",
    "OptionChains",
    "implied_forward",
    "option_chains",
]
