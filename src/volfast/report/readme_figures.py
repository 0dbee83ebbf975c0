"""The README's measured world-model figures, regenerated from a run by one command:

    python -m volfast.report.readme_figures volfast-demo --write README.md --blocks demo
    python -m volfast.report.readme_figures BENCH_RUN --write README.md --blocks world-model
    python -m volfast.report.readme_figures BUILT_RUN --write README.md --blocks world-model-built
    python -m volfast.report.readme_figures volfast-demo --check README.md --blocks demo  # 1: differs

``RUN`` is a ``volfast demo`` work folder (its ``models/``, ``hedge/`` and ``backtest/`` are read) or a
``volfast train`` run folder with ``metrics.json`` (``volfast evaluate``). The README holds each block
between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` lines; nothing between them is written by
hand. ``tests/test_report.py`` runs this on a small run and fails when the README quotes a block or a row
that the script no longer produces.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from volfast.errors import VolfastError

__all__ = ["ReadmeFiguresError", "block_names", "blocks", "check", "main", "replace_blocks", "row_labels"]

ALL_BLOCKS = ("world-model", "world-model-built", "demo")
_BLOCK = re.compile(r"(<!-- figures:([a-z0-9-]+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


class ReadmeFiguresError(VolfastError, ValueError):
    """A run folder without the figures asked for, or a README without the blocks (names which)."""


def _f(v: Any, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _ci(v: Any, ci: Any, nd: int = 3) -> str:
    return _f(v, nd) if not ci else f"{_f(v, nd)} [{_f(ci[0], nd)}, {_f(ci[1], nd)}]"


def _metrics(run: Path) -> dict[str, Any]:
    for p in (run / "models" / "metrics.json", run / "metrics.json"):
        if p.is_file():
            out: dict[str, Any] = json.loads(p.read_text())
            return out
    raise ReadmeFiguresError(
        f"{run}: no metrics.json (in models/ or at the top); run `volfast evaluate --run RUN` first"
    )


def _world_model_block(m: dict[str, Any]) -> str:
    quoted = any("rmse_quoted" in (r.get("test") or {}) for r in m.values())
    lines = [
        "| model | grid | latent | OOS RMSE (vol pts) [95% CI] | PCA, same latent | ratio to PCA | "
        + ("quoted range: RMSE | PCA | ratio | " if quoted else "")
        + "arbitrage violations (test / random latents) | train RMSE | train s |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if quoted else ""),
    ]
    for name, r in m.items():
        if r.get("kind") == "lstm" or "test" not in r:
            continue
        t, tr = r["test"], r.get("train", {})
        b = t.get("pca_same_latent") or {}
        arb = t.get("arbitrage", {}).get("surfaces_with_violation")
        arb_r = t.get("arbitrage_random_latents", {}).get("surfaces_with_violation")
        lines.append(
            f"| {name} | {r['grid']} | {r['latent']} | {_ci(t.get('rmse'), t.get('rmse_ci95'))} | "
            f"{_ci(b.get('rmse'), b.get('rmse_ci95')) if b else '(itself)'} | "
            f"{_ci(b.get('ratio'), b.get('ratio_ci95'), 2) if b else '1'} | "
            + (
                f"{_ci(t.get('rmse_quoted'), t.get('rmse_quoted_ci95'))} | "
                f"{_ci(b.get('rmse_quoted'), b.get('rmse_quoted_ci95')) if b else '(itself)'} | "
                f"{_ci(b.get('ratio_quoted'), b.get('ratio_quoted_ci95'), 2) if b else '1'} | "
                if quoted
                else ""
            )
            + f"{arb} / {arb_r} of "
            f"{t.get('arbitrage', {}).get('surfaces')} / "
            f"{t.get('arbitrage_random_latents', {}).get('surfaces')} | "
            f"{_f(tr.get('rmse'))} | {_f(r.get('train_seconds'), 1)} |"
        )
    started = [(n, r["test"]) for n, r in m.items() if (r.get("test") or {}).get("start")]
    if started:
        lines += [
            "",
            "Untrained start (PCA in eSSVI parameter space) against the trained model, test RMSE (vol pts):",
            "",
            "| model | start | trained |"
            + (" start, quoted range | trained, quoted range |" if quoted else ""),
            "|---|---|---|" + ("---|---|" if quoted else ""),
        ]
        for name, t in started:
            st = t["start"]
            lines.append(
                f"| {name} | {_f(st.get('rmse'))} | {_f(t.get('rmse'))} |"
                + (f" {_f(st.get('rmse_quoted'))} | {_f(t.get('rmse_quoted'))} |" if quoted else "")
            )
    for r in m.values():
        if r.get("kind") != "lstm":
            continue
        lines += [
            "",
            f"One-step forecasts of the {r['encoder']} latents, {r['test_windows']} test days "
            "(decoded vol RMSE, "
            "vol points [95% CI]; improvement in vol MSE over persistence [95% CI]):",
            "",
            "| forecast | vol RMSE | vs persistence | arbitrage violations |",
            "|---|---|---|---|",
        ]
        for mname in ("persistence", "ar1", "lstm"):
            imp = "-"
            if mname != "persistence":
                d = r[f"vol_improvement_{mname}"]
                imp = f"{d['relative'] * 100:+.1f}% [{d['ci95'][0]:.1e}, {d['ci95'][1]:.1e}]"
            a = r.get(f"arbitrage_{mname}", {})
            lines.append(
                f"| {mname} | {_ci(r[f'vol_rmse_{mname}'], r.get(f'vol_rmse_{mname}_ci95'))} | {imp} | "
                f"{a.get('surfaces_with_violation')} of {a.get('surfaces')} |"
            )
    return "\n".join(lines) + "\n"


def _demo_block(run: Path, m: dict[str, Any]) -> str:
    parts = []
    oos = [
        f"{n} {_ci(r['test']['rmse'], r['test'].get('rmse_ci95'))}"
        for n, r in m.items()
        if r.get("kind") != "lstm" and "test" in r
    ]
    parts.append("out-of-sample reconstruction RMSE (vol points, 95% CI): " + ", ".join(oos))
    for r in m.values():
        if r.get("kind") == "lstm":
            d = r["vol_improvement_lstm"]
            parts.append(
                f"the LSTM {d['relative'] * 100:+.1f}% vs persistence in decoded-vol MSE "
                f"({'beats it' if d['beats_persistence'] else 'its 95% interval includes zero or worse'})"
            )
    bt = run / "backtest" / "metrics.json"
    if bt.is_file():
        b = json.loads(bt.read_text()).get("periods", {})
        parts.append(
            f"backtest Sharpe {_f(b['in_sample'].get('sharpe'), 2)} in sample and "
            f"{_f(b['out_of_sample'].get('sharpe'), 2)} out of sample"
        )
    hd = run / "hedge" / "hedge.json"
    if hd.is_file():
        h = json.loads(hd.read_text())
        parts.append(
            f"hedge Sharpe {_f(h['unhedged'].get('sharpe'), 2)} unhedged, "
            f"{_f(h['hedged'].get('sharpe'), 2)} hedged"
        )
    return "; ".join(parts) + ".\n"


def blocks(run: str | Path) -> dict[str, str]:
    """Block name -> generated Markdown, from a demo or train run folder."""
    root = Path(run)
    if not root.is_dir():
        raise ReadmeFiguresError(f"{root}: not a folder; pass a `volfast demo` or `volfast train` run folder")
    m = _metrics(root)
    try:
        wm = _world_model_block(m)  # the truth bench run and the built-surface run share the layout
        return {"world-model": wm, "world-model-built": wm, "demo": _demo_block(root, m)}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ReadmeFiguresError(
            f"{root}: a metrics file lacks {exc} (rerun volfast evaluate / backtest)"
        ) from None


def block_names(text: str) -> list[str]:
    return [mm.group(2) for mm in _BLOCK.finditer(text)]


def row_labels(block: str) -> list[str]:
    """The first cell of every table row of a block (its figures' labels), header and rule rows aside."""
    out = []
    for line in block.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            out.append(line.strip("|").split("|")[0].strip())
    return out


def replace_blocks(text: str, new: dict[str, str]) -> str:
    """Replace the blocks named in ``new``; the others are left as they are."""

    def sub(mm: re.Match[str]) -> str:
        name = mm.group(2)
        return mm.group(1) + new[name] + mm.group(4) if name in new else mm.group(0)

    return _BLOCK.sub(sub, text)


def check(text: str, new: dict[str, str]) -> list[str]:
    """Differences between the README's blocks and freshly generated ones (empty: up to date)."""
    out = []
    have = {mm.group(2): mm.group(3) for mm in _BLOCK.finditer(text)}
    for name in have.keys() - new.keys() - set(ALL_BLOCKS):
        out.append(f"figures:{name}: in the README but not produced by the script")
    have = {k: v for k, v in have.items() if k in new}
    for name in new.keys() - have.keys():
        out.append(f"figures:{name}: produced by the script but missing from the README")
    for name in have.keys() & new.keys():
        if have[name] != new[name]:
            out.append(f"figures:{name}: differs from what the script produces now")
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m volfast.report.readme_figures", description=__doc__.split("\n")[0]
    )
    ap.add_argument("run", help="volfast demo work folder or volfast train run folder (with metrics.json)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="README", help="replace the figure blocks of this file")
    g.add_argument("--check", metavar="README", help="exit 1 when the file's blocks differ from the run's")
    ap.add_argument(
        "--blocks",
        default=None,
        help="comma-separated block names to write or check (default: all); the README's world-model table "
        "comes from the bench run, its demo line from the demo",
    )
    a = ap.parse_args(argv)
    try:
        new = blocks(a.run)
        if a.blocks:
            want = [b.strip() for b in a.blocks.split(",") if b.strip()]
            unknown = sorted(set(want) - set(new))
            if unknown:
                raise ReadmeFiguresError(f"--blocks: unknown {unknown}; known: {sorted(new)}")
            new = {k: v for k, v in new.items() if k in want}
        if a.write:
            p = Path(a.write)
            from volfast.io.output import atomic_write_bytes

            atomic_write_bytes(p, replace_blocks(p.read_text(), new).encode())
            return 0
        if a.check:
            diffs = check(Path(a.check).read_text(), new)
            for d in diffs:
                print(d)
            return 1 if diffs else 0
    except (VolfastError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, text in new.items():
        print(f"<!-- figures:{name} -->\n{text}<!-- /figures:{name} -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
