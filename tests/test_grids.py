"""Grids and the grid dataset: values against the true SSVI surface, the delta inversion, disk round trips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from volfast.surface import (
    DatasetError,
    GridConfig,
    day_grids,
    delta_grid,
    image_grid,
    load_dataset,
    truth_dataset,
    write_day_grids,
)
from volfast.synth.surface import SSVISurface

SURF = SSVISurface(vol_short=0.18, vol_long=0.22, tau=0.5, rho=-0.7, eta=1.1, gamma=0.45)


def test_image_grid_is_the_surface_on_its_axes() -> None:
    cfg = GridConfig()
    img = image_grid(SURF.total_variance, cfg)
    assert img.shape == (32, 32)
    T, k = cfg.image_tenor_years, cfg.image_k
    assert T[0] == pytest.approx(7 / 365) and T[-1] == pytest.approx(2.0)
    assert k[0] == -0.5 and k[-1] == pytest.approx(0.3)
    i, j = 17, 5
    assert img[i, j] == pytest.approx(float(SURF.implied_vol(k[j], T[i])), rel=1e-14)


def test_delta_grid_hits_the_deltas() -> None:
    cfg = GridConfig()
    vols, k = delta_grid(SURF.total_variance, cfg)
    T = cfg.delta_tenor_years[:, None]
    d1 = (-k + 0.5 * vols**2 * T) / (vols * np.sqrt(T))
    nd = np.vectorize(NormalDist().cdf)(d1)
    np.testing.assert_allclose(nd, np.broadcast_to(cfg.delta_calls, nd.shape), atol=1e-12)
    np.testing.assert_allclose(vols, SURF.implied_vol(k, T), rtol=1e-13)
    assert (np.diff(k, axis=1) < 0).all()  # higher call delta = lower strike


def test_delta_grid_nan_when_no_root() -> None:
    vols, k = delta_grid(lambda k, T: np.full(np.broadcast_shapes(np.shape(k), np.shape(T)), np.nan))
    assert np.isnan(vols).all() and np.isnan(k).all()


def test_cvae_grid_takes_first_expiries_beyond_min_days() -> None:
    cfg = GridConfig()
    t = np.array([2 / 365, 9 / 365, 30 / 365, 60 / 365, 0.5])
    g = day_grids(dt.date(2024, 1, 2), SURF.total_variance, t, cfg)
    np.testing.assert_array_equal(g.cvae_expiry_years, t[1:4])
    np.testing.assert_allclose(g.cvae[1], SURF.implied_vol(cfg.cvae_k, t[2]), rtol=1e-14)
    short = day_grids(dt.date(2024, 1, 2), SURF.total_variance, t[:2], cfg)
    assert np.isnan(short.cvae[1:]).all() and np.isnan(short.cvae_expiry_years[1:]).all()


def test_grid_config_checks() -> None:
    with pytest.raises(ValueError, match="image_k_min < image_k_max"):
        GridConfig(image_k_min=0.5, image_k_max=0.1)
    with pytest.raises(ValueError, match="unknown keys"):
        GridConfig.from_dict({"nope": 1})
    cfg = GridConfig(image_nk=8)
    assert GridConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.fixture(scope="module")
def synth_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.synth import generate_days

    out = tmp_path_factory.mktemp("synth")
    generate_days(dt.date(2024, 3, 4), 3, out, seed=5, scale="small")
    return out


def test_truth_dataset_round_trip(synth_days: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ds = truth_dataset(synth_days, out=tmp_path)
    assert len(ds) == 3 and ds.complete("image").all() and ds.complete("cvae").all()
    back = load_dataset(tmp_path)
    for name in ("image", "cvae", "cvae_expiry_years", "delta", "delta_k"):
        np.testing.assert_array_equal(getattr(ds, name), getattr(back, name))
    np.testing.assert_array_equal(back.dates, ds.dates)
    assert len(load_dataset(tmp_path, start=str(ds.dates[1]))) == 2
    # the rebuilt surface is the generator's: it reproduces the true vol of every listed option
    from volfast.surface.dataset import _truth_surface

    first = sorted((synth_days / "truth").glob("date=*"))[0]
    truth = pq.read_table(first / "part-0.parquet").to_pandas()
    w, t = _truth_surface(truth, json.loads((synth_days / "synth-config.json").read_text())["config"])
    opt = truth[truth.kind == "option"]
    T = opt.expiry_years.to_numpy()
    np.testing.assert_allclose(np.sqrt(w(opt.log_moneyness.to_numpy(), T) / T), opt.vol, rtol=1e-12)
    assert ds.cvae_expiry_years[0, 0] == t[t * 365 >= 7][0]
    x, y = back.tensors("cvae")
    assert tuple(x.shape) == (3, 3, 11) and tuple(y.shape) == (3, 3)


def test_load_dataset_errors(synth_days: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no grid partitions"):
        load_dataset(tmp_path)
    truth_dataset(synth_days, out=tmp_path)
    with pytest.raises(DatasetError, match="between"):
        load_dataset(tmp_path, start="2030-01-01")
    # a day written with another grid configuration is named
    odd = day_grids(
        dt.date(2024, 3, 20), SURF.total_variance, np.array([0.1, 0.2, 0.3]), GridConfig(image_nk=8)
    )
    write_day_grids(tmp_path, odd, GridConfig(image_nk=8))
    with pytest.raises(DatasetError, match="date=2024-03-20.*grid configuration differs"):
        load_dataset(tmp_path)
    # a damaged file is named
    bad = tmp_path / "grids" / "date=2024-03-20" / "part-0.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="date=2024-03-20.*unreadable"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="synth-config.json: missing"):
        truth_dataset(tmp_path)
