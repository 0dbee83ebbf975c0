"""The true implied-volatility surface of a synthetic day: SSVI with a power-law phi.

Total implied variance at log-moneyness ``k = log(K/F)`` and ATM total variance ``theta`` (Gatheral and
Jacquier, "Arbitrage-free SVI volatility surfaces", 2014)::

    w(k, theta) = theta / 2 * (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))
    phi(theta)  = eta / (theta^gamma (1 + theta)^(1 - gamma))

Static no-arbitrage (their Remark 4.4 / Corollary 4.1): ``theta(T)`` strictly increasing, ``gamma`` in
(0, 1/2] and ``eta (1 + |rho|) <= 2``, with one ``rho`` for all expiries of a day. ``theta(T)`` integrates a
positive forward variance that decays from the short level to the long level with time scale ``tau``::

    theta(T) = xi_inf T + (xi_0 - xi_inf) tau (1 - exp(-T / tau)),  xi_0 = vol_short^2, xi_inf = vol_long^2

so it is strictly increasing for any state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from volfast.synth.config import SynthConfig
from volfast.synth.state import DayState


@dataclasses.dataclass(frozen=True)
class SSVISurface:
    """One day's true surface. Vols are annualised fractions; ``T`` in ACT/365 years."""

    vol_short: float
    vol_long: float
    tau: float
    rho: float
    eta: float
    gamma: float

    @classmethod
    def from_state(cls, state: DayState, config: SynthConfig) -> SSVISurface:
        rho = state.rho
        # respect eta (1 + |rho|) <= 2 with a small margin, whatever the state
        eta = min(config.ssvi_eta, 1.98 / (1.0 + abs(rho)))
        return cls(state.atm_vol, state.long_vol, config.term_tau, rho, eta, config.ssvi_gamma)

    def theta(self, T: np.ndarray | float) -> np.ndarray:
        """ATM total variance at maturity ``T`` (years)."""
        T = np.asarray(T, dtype=np.float64)
        x0, xi = self.vol_short**2, self.vol_long**2
        return xi * T + (x0 - xi) * self.tau * -np.expm1(-T / self.tau)

    def phi(self, theta: np.ndarray | float) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        return self.eta / (theta**self.gamma * (1.0 + theta) ** (1.0 - self.gamma))

    def total_variance(self, k: np.ndarray | float, T: np.ndarray | float) -> np.ndarray:
        """Total implied variance ``w(k, T)``."""
        k = np.asarray(k, dtype=np.float64)
        theta = self.theta(T)
        p = self.phi(theta) * k
        rho = self.rho
        return 0.5 * theta * (1.0 + rho * p + np.sqrt((p + rho) ** 2 + 1.0 - rho * rho))

    def implied_vol(self, k: np.ndarray | float, T: np.ndarray | float) -> np.ndarray:
        """Black-76 implied vol at log-moneyness ``k`` and maturity ``T`` > 0."""
        T = np.asarray(T, dtype=np.float64)
        return np.sqrt(self.total_variance(k, T) / T)

    def butterfly_g(self, k: np.ndarray, T: float, h: float = 1e-4) -> np.ndarray:
        """Durrleman's density condition ``g(k)`` (>= 0 means no butterfly arbitrage), by central
        differences of ``w`` in ``k``; a test helper, not a hot path."""
        w = self.total_variance(k, T)
        w1 = (self.total_variance(k + h, T) - self.total_variance(k - h, T)) / (2 * h)
        w2 = (self.total_variance(k + h, T) - 2 * w + self.total_variance(k - h, T)) / (h * h)
        return (1 - k * w1 / (2 * w)) ** 2 - w1**2 / 4 * (1 / w + 0.25) + w2 / 2

    def params(self, T: np.ndarray | float) -> dict[str, np.ndarray]:
        """Per-expiry SSVI parameters (theta, phi, rho, eta, gamma) broadcast to ``T``."""
        theta = self.theta(T)
        shape = np.shape(theta)
        return {
            "ssvi_theta": theta,
            "ssvi_phi": self.phi(theta),
            "ssvi_rho": np.full(shape, self.rho),
            "ssvi_eta": np.full(shape, self.eta),
            "ssvi_gamma": np.full(shape, self.gamma),
        }
