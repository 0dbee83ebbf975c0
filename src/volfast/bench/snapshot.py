"""``volfast bench snapshot``: last top of book per instrument at 15:48 New York (10-minute look-back) of
a synthetic ES day (``volfast.synth``), volfast against what a user writes with the databento client and
pandas, and against the databento client's decode alone (a lower bound for any route through it).

Items are mbp-1 records. The error is the largest |bid or ask| difference from the pandas route's answer
(the obvious implementation is the reference here: 0 means the same quotes).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from volfast.bench._common import Row, Suite, best_time, dist_version

DAY = dt.date(2024, 3, 4)
CUT, TZ, LOOKBACK_NS, CHUNK = "15:48", "America/New_York", 600 * 10**9, 1 << 16


def scale_for(quotes: int) -> str:
    """``full`` (about 1.4M mbp-1 records) from 1,000,000 ``--quotes``, else ``small`` (about 60k)."""
    return "full" if quotes >= 1_000_000 else "small"


def synth_day(root: Path, scale: str, day: dt.date = DAY) -> tuple[Path, Path]:
    from volfast.synth import generate_days

    generate_days(day, 1, root, seed=5, scale=scale)
    tag = day.strftime("%Y%m%d")
    return root / f"glbx-mdp3-{tag}.mbp-1.dbn.zst", root / f"glbx-mdp3-{tag}.definition.dbn.zst"


def pandas_route(db: Any, pd: Any, mbp: Path, cut_ns: int) -> Any:
    """The whole file as a DataFrame, the window, then each instrument's last row (whole rows:
    groupby().last() would skip NaN and mix an older bid into a now one-sided quote)."""
    df = db.DBNStore.from_file(mbp).to_df()
    w = df[
        (df.index >= pd.Timestamp(cut_ns - LOOKBACK_NS, tz="UTC"))
        & (df.index <= pd.Timestamp(cut_ns, tz="UTC"))
    ]
    w = w.reset_index().sort_values("ts_recv", kind="stable")
    return w.groupby("instrument_id", sort=True).tail(1).set_index("instrument_id").sort_index()


def run(quotes: int, threads: int, progress: Callable[[str], None] | None = None) -> Suite:
    import volfast
    from volfast.io import DBNFile
    from volfast.snapshot import resolve_cut

    say = progress or (lambda _msg: None)
    s = Suite("snapshot", "record")
    scale = scale_for(quotes)
    with tempfile.TemporaryDirectory(prefix="volfast-bench-") as tmp:
        say(f"synthetic day ({scale})")
        mbp, defs = synth_day(Path(tmp), scale)
        n = sum(len(c) for c in DBNFile(mbp).iter_chunks(CHUNK))
        cut_ns = resolve_cut(CUT, date=DAY, tz=TZ)[0]
        say("volfast snapshot")
        t, res = best_time(
            lambda: volfast.take_snapshot(mbp, definitions=defs, cut=CUT, date=DAY, tz=TZ, lookback="10m")
        )
        db = s.peer("databento")
        pd = s.peer("pandas")
        err: float | None = None
        if db is not None and pd is not None:
            vf = res.table.to_pandas()
            say("databento + pandas")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # databento's own deprecation and resource warnings
                t_pd, ref = best_time(lambda: pandas_route(db, pd, mbp, cut_ns), repeats=1)
            got = vf[vf["has_quote"]].set_index("instrument_id").sort_index()
            both = got.index.intersection(ref.index)
            same_set = len(both) == len(got) == len(ref)
            diffs = [
                np.abs(got.loc[both, a].to_numpy(float) - ref.loc[both, b].to_numpy(float))
                for a, b in (("bid", "bid_px_00"), ("ask", "ask_px_00"))
            ]
            d = np.concatenate(diffs)
            d = d[~(np.isnan(d) & np.isnan(np.concatenate([got.loc[both, "bid"], got.loc[both, "ask"]])))]
            err = float(np.nanmax(d)) if same_set and d.size else float("inf")
            s.rows.append(
                Row(
                    "snapshot",
                    "databento + pandas",
                    f"databento {dist_version('databento')}, pandas {dist_version('pandas')}",
                    t_pd / n * 1e9,
                    0.0,
                    1,
                    n,
                    "to_df, window, last row",
                )
            )
            say("databento decode")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t_dec, _ = best_time(
                    lambda: sum(len(a) for a in db.DBNStore.from_file(mbp).to_ndarray(count=CHUNK)), repeats=1
                )
            s.rows.append(
                Row(
                    "snapshot",
                    "databento decode",
                    dist_version("databento"),
                    t_dec / n * 1e9,
                    None,
                    1,
                    n,
                    "to_ndarray(count=65536) alone, no reduction",
                )
            )
        s.rows.insert(
            0,
            Row(
                "snapshot",
                "volfast",
                dist_version("volfast"),
                t / n * 1e9,
                err,
                1,
                n,
                "volfast.snapshot, C++ reducer",
            ),
        )
    s.notes.append(
        f"snapshot: one synthetic ES day (--scale {scale}, {n:,} mbp-1 records); max_abs_err = largest"
        " bid/ask "
        "difference from the pandas route (inf if the instruments differ)"
    )
    return s
