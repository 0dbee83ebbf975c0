"""``volfast report RUN_DIR``: one self-contained ``report.html`` (every image embedded as a data URI, the
PNGs also written beside it) drawn from whatever stages of a run folder exist (layout:
:mod:`volfast.report.layout`). A missing stage is named in the report and on the console with the command
that produces it; a folder with none of them is an error."""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import json
import os
import re
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from volfast.errors import VolfastError
from volfast.report.layout import RunLayout, Stage

__all__ = [
    "ReportError",
    "ReportResult",
    "build_report",
    "drop_empty_headings",
    "markdown_to_html",
    "reason_counts",
]


class ReportError(VolfastError, ValueError):
    """A run folder the report cannot be drawn from (names the folder and what to run)."""


@dataclasses.dataclass
class ReportResult:
    html: Path  # report.html
    images: list[Path]  # PNGs (and the stress GIF) written beside it
    sections: list[str]  # sections drawn
    missing: list[Stage]  # stages absent from the run folder
    problems: list[str]  # sections whose inputs exist but could not be drawn (with the error)


# ------------------------------------------------------------------------------------------ helpers
def markdown_to_html(md: str) -> str:
    """The Markdown the stages write (``##`` headings, pipe tables, plain lines) as HTML."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if not rows:
            return
        head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
        out.append(
            "<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>"
        )
        out.append(
            "<tbody>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            + "</tbody></table>"
        )
        rows.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            rows.append([c.strip() for c in s.strip("|").split("|")])
            continue
        flush()
        if s.startswith("#"):
            level = min(len(s) - len(s.lstrip("#")) + 1, 5)
            out.append(f"<h{level}>{html.escape(s.lstrip('#').strip())}</h{level}>")
        elif s:
            out.append(f"<p>{html.escape(s)}</p>")
    flush()
    return "\n".join(out)


def _dict_table(rows: list[tuple[str, str]]) -> str:
    return (
        "<table><tbody>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        + "</tbody></table>"
    )


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec) if np.isfinite(v) else "nan"
    return str(v)


class _Page:
    """Collects the report's HTML blocks and writes its images."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.blocks: list[str] = []
        self.images: list[Path] = []

    def add(self, block: str) -> None:
        self.blocks.append(block)

    def figure(self, name: str, fig: Any, caption: str) -> None:
        p = self.folder / f"{name}.png"
        fig.tight_layout()
        from volfast.io.output import atomic_path

        with atomic_path(p) as tmp:  # an object-API figure (volfast._figure): freed with its last reference
            fig.savefig(tmp, dpi=90, format="png")
        self.image(p, caption)

    def image(self, path: Path, caption: str) -> None:
        mime = "image/gif" if path.suffix == ".gif" else "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.images.append(path)
        self.add(
            f'<figure><img alt="{html.escape(path.name)}" src="data:{mime};base64,{data}">'
            f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption></figure>"
        )


def _subplots(n: int, ncols: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    from volfast._figure import new_figure

    nrows = (n + ncols - 1) // ncols
    fig = new_figure((size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


# ----------------------------------------------------------------------------------------- sections
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>\s*", re.S)


def drop_empty_headings(doc: str) -> str:
    """Remove headings with nothing under them: followed directly by a heading of the same or a higher
    level, or by the end of the body (repeated until none is left)."""
    while True:
        out, pos, changed = [], 0, False
        for m in _HEADING.finditer(doc):
            nxt = doc[m.end() :]
            follow = re.match(r"<h([1-6])>", nxt)
            higher = follow is not None and int(follow.group(1)) <= int(m.group(1))
            empty = nxt.startswith("</body>") or higher
            if empty:
                out.append(doc[pos : m.start()])
                pos = m.end()
                changed = True
        out.append(doc[pos:])
        doc = "".join(out)
        if not changed:
            return doc


def reason_counts(reasons: Any) -> dict[str, int]:
    """Invalid-day reasons reduced to kinds: each failed check of a day (the parts after ``|``, split at
    ``;``, expiry labels and numbers dropped) counted once per day, most frequent first."""
    out: dict[str, int] = {}
    for reason in reasons:
        parts = str(reason).split(" | ")
        checks = parts[1:] if len(parts) > 1 else parts
        kinds: set[str] = set()
        for c in checks:
            labelled = len(parts) > 1 and ": " in c and not c.startswith(("min ", "max "))
            body = c.split(": ", 1)[1] if labelled else c  # "EXPIRY: why; why" -> the whys
            for why in body.split(";"):
                kind = _NUMBER.sub("N", why).strip()
                if kind:
                    kinds.add(kind)
        if not kinds and parts[0].strip():
            kinds.add(_NUMBER.sub("N", parts[0]).strip())
        for kind in kinds:
            out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _surfaces(lay: RunLayout, page: _Page) -> str:
    import pyarrow.parquet as pq

    from volfast.surface import load_dataset, read_output
    from volfast.surface.plots import plot_day_smile, plot_surface_heatmap

    summary = json.loads((lay.build / "build-summary.json").read_text())
    days = read_output(lay.build, "days").to_pandas()
    n_valid = int(days["valid"].sum())
    page.add("<h2>Surfaces</h2>")
    rows = [
        ("days built", f"{len(days)} ({days['date'].min()} to {days['date'].max()})"),
        ("valid days (grids written)", str(n_valid)),
        ("invalid days", str(len(days) - n_valid)),
        (
            "build run",
            f"{summary.get('seconds', float('nan')):.1f} s, executor {summary.get('executor', '-')}",
        ),
    ]
    page.add(_dict_table(rows))
    counts = reason_counts(days.loc[~days["valid"], "reason"].astype(str))
    if counts:
        from volfast.report.figures import plot_reason_histogram

        ax = plot_reason_histogram(counts)
        page.figure(
            "invalid_reasons",
            ax.figure,
            "why days were invalid: failed checks by kind (numbers removed), counted once per day",
        )
    ds = load_dataset(lay.build)
    ok = ds.complete("image")
    if not ok.any():
        raise ReportError(f"{lay.build / 'grids'}: no day with a complete image grid to draw")
    atm = np.where(ok, ds.image[:, :, ds.image.shape[2] // 2].mean(axis=1), -np.inf)
    picks = [("last valid day", int(np.flatnonzero(ok)[-1])), ("highest ATM vol day", int(np.argmax(atm)))]
    fig, axes = _subplots(len(picks), 2, (5.5, 4))
    shown = np.stack([ds.image[row] for _, row in picks]) * 100
    vmin, vmax = float(np.nanmin(shown)), float(np.nanmax(shown))
    for ax, (what, row) in zip(axes, picks, strict=True):
        plot_surface_heatmap(ds.image[row], ds.config, ax=ax, title=f"{what}: {ds.dates[row]}")
        for mesh in ax.collections:  # one colour scale for the compared days
            mesh.set_clim(vmin, vmax)
    page.figure(
        "surface_heatmaps",
        fig,
        f"implied vol (vol points) over (log-moneyness x tenor), image grid; one colour scale "
        f"{vmin:.1f} to {vmax:.1f}",
    )
    # smiles of the last valid day: quotes' bid/ask vols, mids and the SVI fits
    day = _dt.date.fromisoformat(str(ds.dates[picks[0][1]]))
    part = f"date={day.isoformat()}/part-0.parquet"
    quotes = pq.read_table(lay.build / "quotes" / part)
    svi = pq.read_table(lay.build / "svi" / part)
    fitted = [i for i in range(svi.num_rows) if np.isfinite(svi.column("a")[i].as_py() or np.nan)]
    show = fitted  # every fitted expiry of the day
    if show:
        fig, axes = _subplots(len(show), 4, (4.0, 3.0))
        view = types.SimpleNamespace(quotes=quotes, svi=svi)
        for ax, i in zip(axes, show, strict=True):
            plot_day_smile(view, i, ax=ax)
        page.figure("smiles", fig, f"{day}: smiles per expiry, bid/ask vol bars, mids and the SVI fit")
    return "surfaces"


def _world_model(lay: RunLayout, page: _Page, missing: set[str]) -> str:
    import torch

    from volfast.agent.world import surface_features
    from volfast.models.data import sequence_breaks, usable
    from volfast.models.io import load_model
    from volfast.models.lstm import make_windows
    from volfast.models.train import encode_dataset, grid_of, latent_sequence
    from volfast.report.figures import plot_forecast, plot_latents, plot_recon_error
    from volfast.surface import load_dataset

    page.add("<h2>World model</h2>")
    if "evaluate" not in missing:
        page.add("<h3>Out-of-sample metrics (volfast evaluate)</h3>")
        page.add(markdown_to_html((lay.models / "metrics.md").read_text()))
    ds = load_dataset(lay.build)
    test_start = None
    errors: dict[str, np.ndarray] = {}
    images: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind in ("pca", "vae", "cvae", "cvae-conv"):
        if f"train {kind}" in missing or not (lay.model(kind) / "model.json").is_file():
            continue
        k, model = load_model(lay.model(kind), map_location="cpu")
        cfg = json.loads((lay.model(kind) / "config.json").read_text())
        test_start = cfg["split"]["test_start"]
        grid = grid_of(k, model.config)
        rows = np.flatnonzero(usable(ds, grid))
        mu, _ = encode_dataset(k, model, ds, rows)
        y = torch.as_tensor(ds.cvae_expiry_years[rows], dtype=torch.float32) if grid == "cvae" else None
        with torch.no_grad():
            pred = model.decode(torch.as_tensor(mu, dtype=torch.float32), y).double().numpy()
        e = np.full(len(ds), np.nan)
        e[rows] = np.sqrt(((pred - ds.grid(grid)[rows]) ** 2).reshape(rows.size, -1).mean(axis=1)) * 100
        errors[f"{kind} ({grid} grid)"] = e
        if grid == "image":
            images[kind] = (rows, pred)
    if errors:
        ax = plot_recon_error(ds.dates, errors, test_start=test_start)
        page.figure(
            "reconstruction_error", ax.figure, "per-day reconstruction RMSE in vol points; test period shaded"
        )
    if images:
        _compare_images(ds, images, page)
    if "train cvae" in missing:
        return "world model"
    seq = latent_sequence(lay.model("cvae"), ds, device="cpu")
    split = seq["split"]
    ax = plot_latents(ds.dates, seq["z"], test_start=split.test_start, title="CVAE latent means per day")
    page.figure(
        "latents", ax.figure, "CVAE latent trajectories (incomplete days leave gaps); test period shaded"
    )
    if "train lstm" in missing:
        return "world model"
    _, lstm = load_model(lay.model("lstm"), map_location="cpu")
    z, ok, enc = seq["z"], seq["ok"], seq["encoder"]
    seg = sequence_breaks(ds.dates, ok, max_gap_days=lstm.config.max_gap_days)
    zf = np.nan_to_num(z)
    idx, win = make_windows(zf, seg, lstm.config.window)
    te = ds.dates[idx] >= np.datetime64(split.test_start, "D")
    if te.sum() >= 2:
        with torch.no_grad():
            p = lstm(torch.as_tensor(win[te], dtype=torch.float32)).double().numpy()
            years = torch.as_tensor(ds.cvae_expiry_years[idx[te]], dtype=torch.float32)
            v_lstm = enc.decode(torch.as_tensor(p, dtype=torch.float32), years).double().numpy()
            v_pers = enc.decode(torch.as_tensor(win[te][:, -1], dtype=torch.float32), years).double().numpy()
        k_axis = np.asarray(ds.config.cvae_k)
        yy = ds.cvae_expiry_years[idx[te]]

        def atm(v: np.ndarray) -> np.ndarray:
            return np.asarray(surface_features(v, k_axis, yy)["atm"]) * 100

        fig, axes = _subplots(2, 1, (9, 3.3))
        plot_forecast(
            ds.dates[idx[te]], atm(ds.cvae[idx[te]]), atm(v_lstm), persistence=atm(v_pers), ax=axes[0]
        )
        plot_forecast(
            ds.dates[idx[te]],
            z[idx[te], 0],
            p[:, 0],
            persistence=win[te][:, -1, 0],
            label="latent z0",
            ax=axes[1],
        )
        page.figure(
            "lstm_forecast", fig, "one-step LSTM forecast vs the observed surface and latent (test days)"
        )
    return "world model"


def _compare_images(ds: Any, images: dict[str, tuple[np.ndarray, np.ndarray]], page: _Page) -> None:
    """The last day every image model decoded: the built surface and each model's, one colour scale for
    all of them, and each model's error on one symmetric scale (vol points)."""
    from volfast.surface.plots import plot_surface_heatmap

    common = set.intersection(*(set(r.tolist()) for r, _ in images.values()))
    if not common:
        return
    day = max(common)
    surfs = {"built surface": ds.image[day]}
    for kind, (rows, pred) in images.items():
        surfs[kind] = pred[int(np.flatnonzero(rows == day)[0])]
    vals = np.stack(list(surfs.values())) * 100
    vmin, vmax = float(np.nanmin(vals)), float(np.nanmax(vals))
    errs = {k: (v - surfs["built surface"]) * 100 for k, v in surfs.items() if k != "built surface"}
    emax = max(float(np.nanmax(np.abs(e))) for e in errs.values()) or 1e-6
    fig, axes = _subplots(len(surfs) + len(errs), 3, (4.6, 3.6))
    for ax, (name, v) in zip(axes, surfs.items(), strict=False):
        plot_surface_heatmap(v, ds.config, ax=ax, title=f"{name}: {ds.dates[day]}")
        for mesh in ax.collections:
            mesh.set_clim(vmin, vmax)
    for ax, (name, e) in zip(axes[len(surfs) :], errs.items(), strict=True):
        days = np.asarray(ds.config.image_tenor_years) * 365.0
        mesh = ax.pcolormesh(
            ds.config.image_k, days, e, shading="nearest", cmap="RdBu_r", vmin=-emax, vmax=emax
        )
        ax.set_yscale("log")
        ax.set_xlabel("log-moneyness ln(K/F)")
        ax.set_ylabel("tenor (days)")
        ax.set_title(f"{name} minus built")
        ax.figure.colorbar(mesh, ax=ax, label="error (vol points)")
    page.figure(
        "surface_comparison",
        fig,
        f"built and decoded image surfaces on {ds.dates[day]}: one colour scale {vmin:.1f} to {vmax:.1f} vol "
        f"points for the surfaces, one of +/-{emax:.2f} vol points for the errors",
    )


def _stress(lay: RunLayout, page: _Page) -> str:
    import pyarrow.parquet as pq

    from volfast.report.figures import plot_stress_path

    s = json.loads((lay.stress / "stress.json").read_text())
    page.add("<h2>Stress test</h2>")
    hl = s.get("half_life_steps", {})
    rows = [
        ("start day", str(s.get("start_date"))),
        ("shock", f"{s['config']['shock']} x {s['config']['magnitude']}, {s['config']['steps']} steps"),
    ] + [
        (f"{k}: excess at step 0 / final (vol points{'' if k == 'atm' else ' per unit'}) / half-life (steps)",
         f"{_fmt(100 * s['shock_step0'][k], '.2f')} / {_fmt(100 * s['shock_final'][k], '.2f')} / "
         f"{_fmt(hl.get(k), '.1f')}")
        for k in s.get("shock_step0", {})
    ]  # fmt: skip
    mc = s.get("monte_carlo")
    if mc:
        q = mc["moves"]["atm"]
        rows.append(
            (f"Monte Carlo ({mc['source']}, {mc['scenarios']} scenarios) ATM vol move, vol points: "
             "1% / 50% / 99% quantiles",
             f"{100 * q['q01']:+.2f} / {100 * q['q50']:+.2f} / {100 * q['q99']:+.2f}")
        )  # fmt: skip
    page.add(_dict_table(rows))
    gif = lay.stress / "stress.gif"
    if gif.is_file():
        dst = page.folder / "stress.gif"
        shutil.copyfile(gif, dst)
        page.image(dst, "stress animation: smiles in vol points through the shock (dashed: unshocked)")
    path = pq.read_table(lay.stress / "path.parquet").to_pandas()
    sh, ba = path[path["path"] == "shock"], path[path["path"] == "base"]
    fig, axes = _subplots(2, 2, (5, 3.3))
    plot_stress_path(sh["step"], sh["atm"], ba["atm"], ax=axes[0])
    plot_stress_path(sh["step"], sh["skew"], ba["skew"], label="skew (vol per unit ln K/F)", ax=axes[1])
    page.figure("stress_path", fig, "shocked and unshocked LSTM rollouts, decoded")
    return "stress"


def _hedge(lay: RunLayout, page: _Page) -> str:
    import pyarrow.parquet as pq

    from volfast.report.figures import plot_hedge_pnl

    h = json.loads((lay.hedge / "hedge.json").read_text())
    page.add("<h2>Hedging agent</h2>")
    u, hd = h["unhedged"], h["hedged"]
    rows = [
        ("period (out of sample)", f"{h['period'][0]} to {h['period'][1]} ({h['days']} days)"),
        ("total PnL unhedged / hedged ($)", f"{u['total_pnl']:,.0f} / {hd['total_pnl']:,.0f}"),
        ("Sharpe unhedged / hedged", f"{_fmt(u['sharpe'], '.2f')} / {_fmt(hd['sharpe'], '.2f')}"),
        ("max drawdown unhedged / hedged ($)", f"{u['max_drawdown']:,.0f} / {hd['max_drawdown']:,.0f}"),
        ("alarm days / hedges", f"{h['alarm_days']} / {len(h['trades'])}"),
        ("premium paid / spread costs ($)", f"{h['premium_paid']:,.0f} / {h['spread_costs']:,.0f}"),
    ]
    page.add(_dict_table(rows))
    t = pq.read_table(lay.hedge / "hedge.parquet").to_pandas()
    ax = plot_hedge_pnl(t["date"], t["unhedged"], t["hedged"])
    page.figure("hedge_pnl", ax.figure, "cumulative PnL of the futures book, with and without the put hedge")
    return "hedge"


def _backtest(lay: RunLayout, page: _Page) -> str:
    import pandas as pd

    from volfast.report.figures import plot_equity_curve

    page.add("<h2>Backtest</h2>")
    md = lay.backtest / "metrics.md"
    if md.is_file():
        page.add(markdown_to_html(md.read_text()))
    daily = pd.read_csv(lay.backtest / "daily.csv")
    ax = plot_equity_curve(
        pd.to_datetime(daily["date"]).to_numpy(), daily["equity"], in_sample=daily.get("in_sample")
    )
    page.figure(
        "backtest_equity", ax.figure, "equity curve of the delta-hedged CVAE signal; in-sample shaded"
    )
    return "backtest"


# -------------------------------------------------------------------------------------------- entry
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}
th{background:#f3f3f3;text-align:left}figure{margin:1em 0}img{max-width:100%}
.missing{background:#fff4e5;border:1px solid #f0b35a;padding:0.5em 1em}code{background:#f5f5f5}"""


def build_report(
    run: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], Any] | None = None,
) -> ReportResult:
    """Draw the report of run folder ``run`` into ``out`` (default ``RUN/report``).

    Raises :class:`ReportError` when ``run`` is not a folder or holds none of the stages (the message lists
    them with their commands). Stages that are absent are listed in the report and passed to ``log``.
    """
    # figures are drawn through the object API (volfast._figure): no backend is switched, no pyplot state
    say = log or (lambda s: None)
    lay = RunLayout.of(run)
    if not lay.root.is_dir():
        raise ReportError(f"{lay.root}: not a folder; produce a run with `volfast demo --out {lay.root}`")
    stages = lay.stages()
    missing = [s for s in stages if not s.done()]
    if len(missing) == len(stages):
        cmds = "\n".join(f"  {s.name}: {s.command}" for s in stages)
        raise ReportError(
            f"{lay.root}: none of the stages a report is drawn from is there (expected {lay.build.name}/, "
            f"{lay.models.name}/, {lay.stress.name}/, {lay.hedge.name}/, {lay.backtest.name}/). "
            f"Run `volfast demo --out {lay.root}`, or the stages:\n{cmds}"
        )
    for s in missing:
        say(f"report: stage '{s.name}' is missing ({s.marker} not found); produce it with: {s.command}")
    names = {s.name for s in missing}
    folder = Path(out) if out is not None else lay.report
    folder.mkdir(parents=True, exist_ok=True)
    page = _Page(folder)
    sections: list[str] = []
    problems: list[str] = []
    jobs: list[tuple[str, bool, Callable[[], str]]] = [
        ("surfaces", "build" not in names, lambda: _surfaces(lay, page)),
        (
            "world model",
            "build" not in names and not {"train pca", "train vae", "train cvae"} <= names,
            lambda: _world_model(lay, page, names),
        ),
        ("stress", "stress" not in names, lambda: _stress(lay, page)),
        ("hedge", "hedge" not in names, lambda: _hedge(lay, page)),
        ("backtest", "backtest" not in names, lambda: _backtest(lay, page)),
    ]
    for name, ready, draw in jobs:
        if not ready:
            continue
        try:
            sections.append(draw())
        except (ValueError, OSError, KeyError) as exc:  # damaged inputs: name them, draw the rest
            msg = f"{name}: could not be drawn from {lay.root}: {type(exc).__name__}: {exc}"
            problems.append(msg)
            page.add(f'<div class="missing"><b>{html.escape(msg)}</b></div>')
            say(f"report: {msg}")
    head = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>volfast report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>volfast report</h1>",
        f"<p>Run folder <code>{html.escape(str(lay.root.resolve()))}</code>, drawn "
        f"{_dt.datetime.now().isoformat(timespec='seconds')}.</p>",
    ]
    if missing:
        items = "".join(
            f"<li><b>{html.escape(s.name)}</b> ({html.escape(str(s.marker))} not found): "
            f"<code>{html.escape(s.command)}</code></li>"
            for s in missing
        )
        head.append(f'<div class="missing"><p>Missing stages, not drawn:</p><ul>{items}</ul></div>')
    doc = drop_empty_headings("\n".join(head + page.blocks + ["</body></html>"]))
    target = folder / "report.html"
    from volfast.io.output import atomic_write_bytes

    atomic_write_bytes(target, doc.encode("utf-8"))
    say(f"report: {target} ({len(sections)} sections, {len(page.images)} images)")
    return ReportResult(target, page.images, sections, missing, problems)
