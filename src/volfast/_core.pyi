# Type declarations of the compiled extension volfast._core (cpp/bindings). Keep in step with the bindings:
# tests/test_core_declarations.py compares these names and signatures with the built module.
#
# The two submodules (black76, snapshot) are pybind11 submodules of the one extension, so they are declared
# as classes of static functions bound to module attributes.
from typing import Any

import numpy as np
from numpy.typing import NDArray

__version__: str

def hardware_threads() -> int: ...
def simd_level() -> str: ...
def simd_levels() -> dict[str, dict[str, bool]]: ...
def set_simd_level(name: str) -> str: ...
def simd_best() -> str: ...

class _Black76:
    MAX_ITERATIONS: int
    BATCHED_DEFAULT: bool
    @staticmethod
    def price(
        forward: NDArray[np.float64],
        strike: NDArray[np.float64],
        expiry_years: NDArray[np.float64],
        vol: NDArray[np.float64],
        is_call: NDArray[np.bool_],
        discount_factor: NDArray[np.float64],
        threads: int = 0,
    ) -> NDArray[np.float64]: ...
    @staticmethod
    def vega(
        forward: NDArray[np.float64],
        strike: NDArray[np.float64],
        expiry_years: NDArray[np.float64],
        vol: NDArray[np.float64],
        discount_factor: NDArray[np.float64],
        threads: int = 0,
    ) -> NDArray[np.float64]: ...
    @staticmethod
    def delta(
        forward: NDArray[np.float64],
        strike: NDArray[np.float64],
        expiry_years: NDArray[np.float64],
        vol: NDArray[np.float64],
        is_call: NDArray[np.bool_],
        discount_factor: NDArray[np.float64],
        threads: int = 0,
    ) -> NDArray[np.float64]: ...
    @staticmethod
    def gamma(
        forward: NDArray[np.float64],
        strike: NDArray[np.float64],
        expiry_years: NDArray[np.float64],
        vol: NDArray[np.float64],
        discount_factor: NDArray[np.float64],
        threads: int = 0,
    ) -> NDArray[np.float64]: ...
    @staticmethod
    def implied_vol(
        price: NDArray[np.float64],
        forward: NDArray[np.float64],
        strike: NDArray[np.float64],
        expiry_years: NDArray[np.float64],
        is_call: NDArray[np.bool_],
        discount_factor: NDArray[np.float64],
        threads: int = 0,
        with_iterations: bool = False,
        batched: bool = True,
    ) -> tuple[Any, ...]: ...
    @staticmethod
    def normalised_black(
        x: NDArray[np.float64], s: NDArray[np.float64], theta: NDArray[np.float64], threads: int = 0
    ) -> NDArray[np.float64]: ...
    @staticmethod
    def transcendental_floor(n: int) -> float: ...
    @staticmethod
    def lane_math(fn: str, x: NDArray[np.float64]) -> NDArray[np.float64]: ...

class _Reducer:
    def __init__(self, cut_ns: int, lookback_ns: int, by_venue: bool = False) -> None: ...
    def update(
        self,
        ts_recv: NDArray[np.uint64],
        instrument_id: NDArray[np.uint32],
        bid_px: NDArray[np.int64],
        ask_px: NDArray[np.int64],
        bid_sz: NDArray[np.uint32],
        ask_sz: NDArray[np.uint32],
        publisher_id: NDArray[np.uint16] | None = None,
    ) -> None: ...
    def result(self) -> dict[str, NDArray[Any]]: ...
    @property
    def counters(self) -> dict[str, int | None]: ...
    @property
    def cut_ns(self) -> int: ...
    @property
    def window_start_ns(self) -> int: ...
    @property
    def by_venue(self) -> bool: ...

class _Snapshot:
    UNDEF_PRICE: int
    Reducer: type[_Reducer]

black76: _Black76
snapshot: _Snapshot
