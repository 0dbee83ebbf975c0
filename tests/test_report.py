"""`volfast report`: each section drawn from the stages that exist, missing stages named with their
commands, a folder with none an error; the plots take ax=None and return their axes."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from volfast.report import ReportError, RunLayout, build_report, markdown_to_html


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reduced demo run: 40 synthetic days through every stage (few epochs, short stress)."""
    import io

    from rich.console import Console

    from volfast.demo import DemoConfig, run_pipeline

    root = tmp_path_factory.mktemp("report_run")
    cfg = DemoConfig(days=40, seed=3, epochs=8, executor="serial", stress_steps=8, mc_scenarios=200)
    run_pipeline(root, cfg, console=Console(file=io.StringIO(), width=120))
    return root


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_of_a_full_run_embeds_every_section(small_run: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    res = build_report(small_run, out=tmp_path / "rep", log=lines.append)
    assert res.missing == [] and res.problems == []
    assert res.sections == ["surfaces", "world model", "stress", "hedge", "backtest"]
    text = res.html.read_text()
    names = {p.name for p in res.images}
    want = {
        "surface_heatmaps.png", "smiles.png", "reconstruction_error.png", "latents.png", "lstm_forecast.png",
        "stress.gif", "stress_path.png", "hedge_pnl.png", "backtest_equity.png",
    }  # fmt: skip
    assert want <= names
    pngs = _embedded_pngs(text)
    assert len(pngs) == len(want) - 1 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # the embedded images are the files beside the report, byte for byte
    assert sorted(pngs) == sorted((tmp_path / "rep" / n).read_bytes() for n in want if n.endswith(".png"))
    assert 'src="data:image/gif;base64,' in text
    # both metrics tables: the world-model table from evaluate and the backtest's
    assert "Reconstruction, out of sample" in text and "<th>RMSE (vol pts)</th>" in text
    assert "<td>out_of_sample</td>" in text and "<th>Sharpe</th>" in text
    assert "Missing stages" not in text


def test_missing_stages_are_named_with_their_commands(small_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "partial"
    shutil.copytree(small_run / "build", run / "build")
    shutil.copytree(small_run / "backtest", run / "backtest")
    lines: list[str] = []
    res = build_report(run, log=lines.append)
    missing = {s.name for s in res.missing}
    assert missing == {"train pca", "train vae", "train cvae", "train lstm", "evaluate", "stress", "hedge"}
    assert res.sections == ["surfaces", "backtest"] and res.problems == []
    text = res.html.read_text()
    lay = RunLayout.of(run)
    assert f"volfast stress --run {lay.models} --data {lay.build} --out {lay.stress}" in text
    assert any("'hedge' is missing" in s and f"volfast hedge --run {lay.models}" in s for s in lines)
    assert res.html == run / "report" / "report.html"


def test_empty_or_absent_run_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="none of the stages.*volfast demo --out"):
        build_report(tmp_path)
    with pytest.raises(ReportError, match="not a folder"):
        build_report(tmp_path / "nope")
    from volfast.cli import main

    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 1 and "volfast build --data DBN_DIR" in r.output


def test_damaged_stage_is_reported_and_the_rest_drawn(small_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "damaged"
    shutil.copytree(small_run / "build", run / "build")
    shutil.copytree(small_run / "hedge", run / "hedge")
    (run / "hedge" / "hedge.parquet").write_bytes(b"not parquet")
    res = build_report(run)
    assert res.sections == ["surfaces"]
    assert len(res.problems) == 1 and "hedge" in res.problems[0] and "hedge.parquet" in res.problems[0]


def test_cli_report(small_run: Path, tmp_path: Path) -> None:
    from volfast.cli import main

    r = CliRunner().invoke(main, ["report", str(small_run), "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "report.html").is_file() and "Report:" in r.output


def test_markdown_tables_to_html() -> None:
    md = "## Title\n\n| a | b |\n|---|---|\n| 1 | x<y |\n\ntext\n"
    h = markdown_to_html(md)
    assert "<h3>Title</h3>" in h
    assert "<th>a</th><th>b</th>" in h and "<td>1</td><td>x&lt;y</td>" in h and "---" not in h
    assert "<p>text</p>" in h


def test_plots_take_and_return_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volfast.report import figures

    d = np.arange("2024-01-02", "2024-01-12", dtype="datetime64[D]")
    x = np.linspace(0.0, 1.0, d.size)
    fig, ax = plt.subplots()
    calls = [
        lambda a: figures.plot_latents(d, np.c_[x, -x], test_start=d[6], ax=a),
        lambda a: figures.plot_recon_error(d, {"m": x + 0.1}, test_start=d[6], ax=a),
        lambda a: figures.plot_forecast(d, x, x, persistence=x, ax=a),
        lambda a: figures.plot_stress_path(np.arange(d.size), x, x, ax=a),
        lambda a: figures.plot_hedge_pnl(d, x, x, ax=a),
        lambda a: figures.plot_equity_curve(d, x, in_sample=x < 0.5, ax=a),
    ]
    for call in calls:
        ax.clear()
        assert call(ax) is ax
    # hedge PnL is drawn cumulated: the last point is the total
    ax.clear()
    figures.plot_hedge_pnl(d, x, 2 * x, ax=ax)
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(x.sum())
    plt.close("all")
    new = figures.plot_equity_curve(d, x)
    assert new is not None and new.figure is not fig
    plt.close("all")
