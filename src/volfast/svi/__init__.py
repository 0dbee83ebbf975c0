"""Batched raw-SVI fits per expiry slice, arbitrage checks (butterfly g(k), calendar) and repair."""

from volfast.svi.core import (
    ButterflyCheck,
    SVIFit,
    SVIStatus,
    check_butterfly,
    check_calendar,
    fit_svi,
    gj_jw_repair,
    jw_to_raw,
    raw_to_jw,
    ssvi_to_raw,
    svi_g,
    total_variance,
)

__all__ = [
    "ButterflyCheck",
    "SVIFit",
    "SVIStatus",
    "check_butterfly",
    "check_calendar",
    "fit_svi",
    "gj_jw_repair",
    "jw_to_raw",
    "raw_to_jw",
    "ssvi_to_raw",
    "svi_g",
    "total_variance",
]
