"""The agent on top of the world model: latent stress tests (shock + LSTM rollout, Monte Carlo scenarios)
and the latent-energy put hedger, evaluated out of sample."""

from __future__ import annotations

from volfast.agent._config import AgentError
from volfast.agent.energy import EnergyConfig, latent_energy
from volfast.agent.hedge import HedgeConfig, run_hedge
from volfast.agent.scenarios import ScenarioConfig, run_scenarios
from volfast.agent.stress import StressConfig, run_stress
from volfast.agent.world import load_world, surface_features

__all__ = [
    "AgentError",
    "EnergyConfig",
    "HedgeConfig",
    "ScenarioConfig",
    "StressConfig",
    "latent_energy",
    "load_world",
    "run_hedge",
    "run_scenarios",
    "run_stress",
    "surface_features",
]
