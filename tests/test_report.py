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
def small_run(demo_run: Path) -> Path:
    """The session's reduced demo run (conftest.demo_run: 40 synthetic days through every stage, few
    epochs, short stress), shared with test_demo."""
    return demo_run


def _empty_headings(text: str) -> list[str]:
    """Headings followed by a heading of the same or a higher level, or by the end of the body."""
    tags = re.findall(r"<(h[1-6])>(.*?)</h[1-6]>|(</body>)|<(p|table|figure|div|ul)[ >]", text, flags=re.S)
    out = []
    for i, (h, title, _end, _) in enumerate(tags):
        if not h:
            continue
        nxt = tags[i + 1] if i + 1 < len(tags) else ("", "", "</body>", "")
        if nxt[2] or (nxt[0] and int(nxt[0][1]) <= int(h[1])):
            out.append(title)
    return out


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_of_a_full_run_embeds_every_section(small_run: Path, tmp_path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    lines: list[str] = []
    # Issue 14: drawing a report changes nothing global (no matplotlib.use, no pyplot figures left)
    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # not Agg: a run-time matplotlib.use("Agg") would show
    try:
        figs = plt.get_fignums()
        res = build_report(small_run, out=tmp_path / "rep", log=lines.append)
        assert matplotlib.get_backend() == "pdf" and plt.get_fignums() == figs
    finally:
        matplotlib.use(before)
    assert res.missing == [] and res.problems == []
    assert res.sections == ["surfaces", "world model", "stress", "hedge", "backtest"]
    text = res.html.read_text()
    names = {p.name for p in res.images}
    want = {
        "surface_heatmaps.png", "smiles.png", "reconstruction_error.png", "latents.png", "lstm_forecast.png",
        "stress.gif", "stress_path.png", "hedge_pnl.png", "backtest_equity.png", "surface_comparison.png",
    }  # fmt: skip
    assert want <= names
    pngs = _embedded_pngs(text)
    png_files = sorted(p for p in res.images if p.suffix == ".png")
    assert len(pngs) == len(png_files) and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # the embedded images are the files beside the report, byte for byte
    assert sorted(pngs) == sorted(p.read_bytes() for p in png_files)
    assert 'src="data:image/gif;base64,' in text
    # both metrics tables: the world-model table from evaluate and the backtest's
    assert "Reconstruction, out of sample" in text and "<th>RMSE (vol pts)</th>" in text
    assert "<th>ratio to PCA</th>" in text and "Static arbitrage of decoded surfaces" in text
    # stress figures in vol points, compared surfaces on one colour scale
    assert "excess at step 0 / final (vol points" in text and "one colour scale" in text
    assert _empty_headings(text) == []
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
    res = (tmp_path / "r" / "report.html").read_text()
    assert "<h2>Backtest</h2>" in res and _embedded_pngs(res)  # the file it wrote, not the console text


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


def test_reasons_are_counted_by_kind() -> None:
    from volfast.report.report import reason_counts

    reasons = [
        "1 of 4 expiries pass the validity checks (need 3) | ESH4 P: 4 two-sided strikes < 6; min ln(K/F) "
        "-0.210 > -0.5 | ESM4: no usable quotes",
        "2 of 5 expiries pass the validity checks (need 3) | E1A: 2 two-sided strikes < 6",
        "snapshot damaged: 17 records",
    ]
    got = reason_counts(reasons)
    assert got == {
        "N two-sided strikes < N": 2,
        "min ln(K/F) N > N": 1,
        "no usable quotes": 1,
        "snapshot damaged: N records": 1,
    }


def test_empty_headings_are_dropped() -> None:
    from volfast.report.report import drop_empty_headings

    doc = "<h2>A</h2>\n<h3>empty</h3>\n<h2>B</h2><p>x</p><h3>C</h3><table></table><h2>tail</h2>\n</body>"
    out = drop_empty_headings(doc)
    assert "empty" not in out and "<h2>A</h2>" not in out and "tail" not in out
    assert "<h2>B</h2>" in out and "<h3>C</h3>" in out
    assert _empty_headings(out) == []


def test_report_renders_in_a_headless_browser(small_run: Path, tmp_path: Path) -> None:
    """Chromium (Debian package) loads the report with no console error, every image decodes."""
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    res = build_report(small_run, out=tmp_path / "rep")
    probe = tmp_path / "rep" / "probe.html"
    page = res.html.read_text()
    # a script that reports broken images and errors through the console, then writes the verdict
    script = (
        "<script>window.addEventListener('load',()=>{const bad=[...document.images]"
        ".filter(i=>!(i.complete&&i.naturalWidth>0)).map(i=>i.alt);"
        "document.title='verdict:'+(bad.length?'broken '+bad.join(','):'ok');"
        "if(bad.length)console.error('broken images: '+bad.join(','));});</script>"
    )
    probe.write_text(page.replace("</body>", script + "</body>"))
    r = subprocess.run(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == [], console
    assert "<title>verdict:ok</title>" in r.stdout
    assert _empty_headings(r.stdout) == []


def test_readme_figures_are_what_the_script_produces(small_run: Path, tmp_path: Path) -> None:
    """Every figure block and table row the README quotes is one the script still produces (run on a small
    run here; the README's numbers come from the full demo and bench runs); --write then --check agree."""
    from volfast.report import readme_figures as rf

    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    new = rf.blocks(small_run)
    assert sorted(rf.block_names(text)) == sorted(new)
    have = {m.group(2): m.group(3) for m in rf._BLOCK.finditer(text)}
    for name, block in have.items():
        models = {"pca", "vae", "cvae", "cvae-conv"}  # the bench trains all; the small demo run fewer
        assert set(rf.row_labels(block)) <= set(rf.row_labels(new[name])) | models
        assert block.strip(), f"README block figures:{name} is empty: run the script with --write"
    copy = tmp_path / "README.md"
    copy.write_text(text)
    assert rf.main([str(small_run), "--write", str(copy)]) == 0
    assert rf.main([str(small_run), "--check", str(copy)]) == 0
    assert rf.main([str(small_run), "--check", str(readme)]) in (0, 1)
    assert rf.main([str(tmp_path / "nowhere"), "--check", str(copy)]) == 2
