"""The work folder of a full run (``volfast demo`` writes it, ``volfast report`` reads it), defined once.

::

    ROOT/data      DBN day files + truth/ (``volfast synth``; absent when the demo reads real data)
    ROOT/build     ``volfast build`` output (snapshots, quotes, forwards, svi, grids, days)
    ROOT/models    ``volfast train`` runs: pca/, vae/, cvae/, lstm/ (+ metrics.json/.md from evaluate)
    ROOT/stress    ``volfast stress`` output (path, surfaces, scenarios .parquet; frames/, stress.gif/.json)
    ROOT/hedge     ``volfast hedge`` output (hedge.parquet, hedge.json)
    ROOT/backtest  ``volfast backtest`` output (daily.csv, trades.csv, metrics.json/.md)
    ROOT/report    report.html and its PNGs
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["MODEL_KINDS", "RunLayout", "Stage"]

MODEL_KINDS = ("pca", "vae", "cvae", "lstm")  # what the demo trains, in training order (lstm reads cvae)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the run: its name, the file whose presence marks it finished, and the command that
    produces it."""

    name: str
    marker: Path
    command: str

    def done(self) -> bool:
        return self.marker.is_file()


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Paths of a run folder (see the module docstring)."""

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> RunLayout:
        return cls(Path(root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def stress(self) -> Path:
        return self.root / "stress"

    @property
    def hedge(self) -> Path:
        return self.root / "hedge"

    @property
    def backtest(self) -> Path:
        return self.root / "backtest"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def model(self, kind: str) -> Path:
        return self.models / kind

    def stages(self) -> list[Stage]:
        """Every stage the report draws on, in pipeline order, with the command that produces it."""
        r = self.root
        out = [
            Stage(
                "build",
                self.build / "build-summary.json",
                f"volfast build --data DBN_DIR --out {r / 'build'}  (or `volfast demo --out {r}`)",
            )
        ]
        for k in MODEL_KINDS:
            enc = f" --encoder {self.model('cvae')}" if k == "lstm" else ""
            out.append(
                Stage(
                    f"train {k}",
                    self.model(k) / "model.json",
                    f"volfast train --model {k} --data {self.build} --out {self.models}{enc}",
                )
            )
        out += [
            Stage("evaluate", self.models / "metrics.json", f"volfast evaluate --run {self.models}"),
            Stage(
                "stress",
                self.stress / "stress.json",
                f"volfast stress --run {self.models} --data {self.build} --out {self.stress}",
            ),
            Stage(
                "hedge",
                self.hedge / "hedge.json",
                f"volfast hedge --run {self.models} --data {self.build} --out {self.hedge}",
            ),
            Stage(
                "backtest",
                self.backtest / "metrics.json",
                f"volfast backtest --data {self.build} --out {self.backtest}",
            ),
        ]
        return out

    def missing(self) -> list[Stage]:
        """Stages whose marker file is absent."""
        return [s for s in self.stages() if not s.done()]
