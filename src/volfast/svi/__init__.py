"""Batched raw-SVI fits per expiry slice with no-arbitrage enforced in the fit, and exact arbitrage checks
(butterfly g(k) on an interval, calendar over the whole real line)."""

from volfast.svi.core import (
    ButterflyCheck,
    SVIFit,
    SVIInputError,
    SVIStatus,
    check_butterfly,
    check_butterfly_exact,
    check_calendar,
    check_calendar_exact,
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
    "SVIInputError",
    "check_butterfly",
    "check_butterfly_exact",
    "check_calendar",
    "check_calendar_exact",
    "fit_svi",
    "gj_jw_repair",
    "jw_to_raw",
    "raw_to_jw",
    "ssvi_to_raw",
    "svi_g",
    "total_variance",
]
