"""``volfast.synth``: a synthetic ES futures-and-options market written as real Databento DBN files,
with its ground truth (forwards, discount factors, arbitrage-free SSVI surfaces, latent state) in Parquet;
and a SPY options market on OPRA (:mod:`volfast.synth.spy`: American quotes, dividends, 17 venues).

    from volfast.synth import generate_days, SynthConfig
    generate_days(datetime.date(2024, 1, 2), 5, "data/synth", seed=7, scale="small")

See :mod:`volfast.synth.generate` for the file layout and :mod:`volfast.synth.state` for the
reproducibility rule.
"""

from __future__ import annotations

from volfast.synth.calendar import (
    cut_time_ns,
    holidays,
    is_trading_day,
    next_trading_day,
    session_bounds_ns,
    trading_days,
)
from volfast.synth.config import SCALES, SynthConfig, SynthError
from volfast.synth.generate import (
    TRUTH_SCHEMA,
    DayResult,
    file_names,
    generate_day,
    generate_days,
    option_tick,
    truth_path,
)
from volfast.synth.spy import SpyConfig, SpyDayResult, generate_spy_day, generate_spy_days
from volfast.synth.state import DayState, state_path
from volfast.synth.surface import SSVISurface

__all__ = [
    "SCALES",
    "TRUTH_SCHEMA",
    "DayResult",
    "DayState",
    "SSVISurface",
    "SpyConfig",
    "SpyDayResult",
    "SynthConfig",
    "SynthError",
    "cut_time_ns",
    "file_names",
    "generate_day",
    "generate_days",
    "generate_spy_day",
    "generate_spy_days",
    "holidays",
    "is_trading_day",
    "next_trading_day",
    "option_tick",
    "session_bounds_ns",
    "state_path",
    "trading_days",
    "truth_path",
]
