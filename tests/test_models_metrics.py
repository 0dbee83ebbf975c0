"""Metrics, losses and walk-forward plumbing of volfast.models (no data needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volfast.models.data import sequence_breaks, split_dates
from volfast.models.losses import kl_per_dim, latent_correlation_penalty, vae_loss
from volfast.models.lstm import AR1, make_windows
from volfast.models.metrics import block_bootstrap_ci, latent_stats, rmse_table, ssim
from volfast.models.walkforward import EarlyStopping, cross_validate, donate_weights, expanding_folds
from volfast.surface import DatasetError


@pytest.mark.parametrize(("shape", "win"), [((32, 32), 7), ((32, 32), 3), ((3, 11), 3), ((9, 20), 7)])
def test_ssim_matches_scikit_image(shape: tuple[int, int], win: int) -> None:
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    k = np.linspace(-0.5, 0.3, shape[1])[None, :]
    t = np.linspace(0.05, 2, shape[0])[:, None]
    for noise in (0.0005, 0.005, 0.05):
        a = 0.2 - 0.15 * k + 0.3 * k**2 + 0.02 * np.sqrt(t)
        b = a + noise * rng.standard_normal(shape)
        rng_a = float(a.max() - a.min())
        ref = skm.structural_similarity(b, a, data_range=rng_a, win_size=win)
        got = float(ssim(torch.as_tensor(b), torch.as_tensor(a), data_range=rng_a, win_size=win))
        assert got == pytest.approx(ref, abs=1e-10)


def test_ssim_batched_and_bad_window() -> None:
    x = torch.rand(4, 8, 8, dtype=torch.float64)
    y = torch.rand(4, 8, 8, dtype=torch.float64)
    s = ssim(x, y, data_range=torch.ones(4), win_size=7)
    assert s.shape == (4,)
    for i in range(4):
        assert float(s[i]) == pytest.approx(float(ssim(x[i], y[i], data_range=1.0)), abs=1e-12)
    assert float(ssim(x, x, data_range=1.0).min()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="win_size"):
        ssim(x[:, :3], y[:, :3], data_range=1.0, win_size=7)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(x, y[:, :4], data_range=1.0)


def test_kl_matches_torch_distributions() -> None:
    mu = torch.randn(5, 3, dtype=torch.float64)
    logvar = torch.randn(5, 3, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl_per_dim(mu, logvar), torch.distributions.kl_divergence(q, p))


def test_latent_correlation_penalty() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    assert float(latent_correlation_penalty(torch.cat([a, b], 1))) < 1e-3  # independent: ~0
    assert float(latent_correlation_penalty(torch.cat([a, -2 * a + 1], 1))) == pytest.approx(1.0)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    c = np.corrcoef(x.numpy(), rowvar=False)
    want = (c[~np.eye(4, dtype=bool)] ** 2).mean()
    assert float(latent_correlation_penalty(x)) == pytest.approx(want, rel=1e-10)
    assert float(latent_correlation_penalty(x[:, :1])) == 0.0


def test_vae_loss_terms_logged_separately() -> None:
    err = torch.full((2, 3, 11), 0.5)
    mu = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = vae_loss(err, mu, torch.zeros(2, 2), alpha=0.1, beta=2.0)
    assert float(t.recon) == pytest.approx(0.25)
    assert float(t.kl) == pytest.approx(0.5)  # 0.5 * mu^2 summed over dims, averaged over the batch
    assert float(t.corr) == pytest.approx(1.0)  # two points: perfectly (anti)correlated
    assert float(t.total) == pytest.approx(0.25 + 0.05 + 2.0)


def test_rmse_table_vol_points() -> None:
    k = np.linspace(-0.5, 0.3, 9)
    true = np.full((2, 3, 9), 0.2)
    pred = true.copy()
    pred[..., 5] += 0.01  # the column at k = 0: ATM off by one vol point
    r = rmse_table(pred, true, k, wing_k=0.2)
    assert r["rmse_atm"] == pytest.approx(1.0)
    assert r["rmse_wings"] == 0.0
    assert r["rmse"] == pytest.approx(np.sqrt(1 / 9))
    assert r["max_abs"] == pytest.approx(1.0)


def test_latent_stats() -> None:
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((500, 3))
    s = latent_stats(mu, np.zeros((500, 3)))
    assert np.allclose(np.diag(s["corr"]), 1.0)
    assert np.allclose(s["kl_per_dim"], 0.5 * (mu**2).mean(0))


def test_block_bootstrap_ci() -> None:
    rng = np.random.default_rng(1)
    d = 0.5 + rng.standard_normal(400)
    mean, lo, hi = block_bootstrap_ci(d, block=10, reps=1000, seed=0)
    assert lo < mean < hi and lo > 0.2 and hi < 0.8
    assert block_bootstrap_ci(d, seed=0) == block_bootstrap_ci(d, seed=0)
    _, lo0, hi0 = block_bootstrap_ci(rng.standard_normal(400), seed=0)
    assert lo0 < 0 < hi0
    with pytest.raises(ValueError):
        block_bootstrap_ci(np.array([]))


def test_donate_weights() -> None:
    np.testing.assert_allclose(donate_weights(5), [1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2])
    for n in range(1, 9):
        w = donate_weights(n)
        assert w.sum() == pytest.approx(1.0) and np.all(np.diff(w) >= 0)
    with pytest.raises(ValueError):
        donate_weights(0)


def test_expanding_folds_never_look_ahead() -> None:
    folds = expanding_folds(100, 5)
    assert len(folds) == 5
    prev_train = 0
    for tr, te in folds:
        assert tr.max() < te.min()  # train strictly before test
        assert tr[0] == 0 and tr.size > prev_train  # expanding window
        assert np.all(np.diff(tr) == 1) and np.all(np.diff(te) == 1)
        prev_train = tr.size
    assert folds[-1][1][-1] == 99
    with pytest.raises(ValueError, match="too few for 5 walk-forward folds"):
        expanding_folds(10, 5)


def test_cross_validate_weights_newest_most() -> None:
    res = cross_validate(lambda tr, te: float(te[0]), 60, 5)
    np.testing.assert_allclose(res.score, np.dot(donate_weights(5), res.fold_scores))
    assert res.fold_scores == sorted(res.fold_scores)


def test_early_stopping() -> None:
    es = EarlyStopping(patience=2)
    losses = [3.0, 2.0, 2.5, 2.4, 1.0]
    stops = [es.step(v, {"v": v}) for v in losses]
    assert stops == [False, False, False, True, False]
    assert es.best == 1.0 and es.best_state == {"v": 1.0} and es.best_epoch == 4
    es2 = EarlyStopping(patience=5)
    assert es2.step(float("nan")) is True


def test_split_dates_and_too_few_days() -> None:
    d = np.arange("2024-01-01", "2024-03-01", dtype="datetime64[D]")
    sp = split_dates(d, test_fraction=0.2, val_fraction=0.25)
    tr, va, te = sp.masks(d)
    assert (tr | va | te).all() and not (tr & va).any() and not (va & te).any()
    assert d[tr].max() < d[va].min() and d[va].max() < d[te].min()
    assert te.sum() == 12
    with pytest.raises(DatasetError, match="too few"):
        split_dates(d[:3], test_fraction=0.2, val_fraction=0.2)


def test_sequences_break_at_missing_and_nan_days() -> None:
    d = np.array(
        [
            "2024-01-02",
            "2024-01-03",
            "2024-01-04",
            "2024-01-05",
            "2024-01-08",
            "2024-01-09",
            "2024-01-10",
            "2024-01-22",
            "2024-01-23",
        ],
        dtype="datetime64[D]",
    )
    ok = np.ones(d.size, dtype=bool)
    ok[5] = False  # a day with NaN cells
    seg = sequence_breaks(d, ok, max_gap_days=5)
    # the weekend (3 days) keeps the sequence; the NaN day and the 12-day gap break it
    np.testing.assert_array_equal(seg, [0, 0, 0, 0, 0, -1, 1, 2, 2])
    z = np.arange(d.size, dtype=float)[:, None]
    idx, win = make_windows(z, seg, 2)
    np.testing.assert_array_equal(idx, [2, 3, 4])
    np.testing.assert_array_equal(win[:, :, 0], [[0, 1], [1, 2], [2, 3]])


def test_ar1_recovers_coefficients() -> None:
    rng = np.random.default_rng(2)
    z = np.zeros((3000, 2))
    for t in range(1, 3000):
        z[t] = [0.1, -0.2] + np.array([0.9, 0.5]) * z[t - 1] + 0.1 * rng.standard_normal(2)
    ar = AR1.fit(z[:-1], z[1:])
    np.testing.assert_allclose(ar.phi, [0.9, 0.5], atol=0.03)
    np.testing.assert_allclose(ar.c, [0.1, -0.2], atol=0.03)
    with pytest.raises(ValueError):
        AR1.fit(z[:2], z[1:3])
