"""Fréchet distance and KVD against analytic cases and a direct implementation of the formulas."""

import numpy as np
import pytest

from avbench.metrics.frechet import (
    GaussianStats,
    bootstrap_ci,
    feature_stats,
    frechet_distance,
    frechet_distance_from_features,
    trace_sqrt_product,
)
from avbench.metrics.kvd import polynomial_mmd2


def _features(seed, n=300, d=16, shift=0.0, mix_seed=None):
    """Correlated Gaussian features; the mixing matrix (the distribution) comes from `mix_seed`."""
    rng = np.random.default_rng(seed)
    a = np.random.default_rng(seed if mix_seed is None else mix_seed).normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ a + shift


def test_identical_sets_give_zero():
    x = _features(0)
    for method in ("eigh", "svd"):
        assert abs(frechet_distance_from_features(x, x, sqrt=method)) < 1e-9


def test_diagonal_covariances_match_closed_form():
    rng = np.random.default_rng(1)
    d = 12
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1 = GaussianStats(mu1, np.diag(a), n=100)
    s2 = GaussianStats(mu2, np.diag(b), n=100)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in ("eigh", "svd", "scipy"):
        assert frechet_distance(s1, s2, sqrt=method) == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_translation_invariance():
    x, y = _features(2), _features(3, shift=0.5)
    base = frechet_distance_from_features(x, y)
    t = np.random.default_rng(4).normal(size=x.shape[1]) * 10
    assert frechet_distance_from_features(x + t, y + t) == pytest.approx(base, rel=1e-9)
    assert base > 0.1


def test_square_root_paths_agree_on_general_covariances():
    x, y = _features(5, n=200, d=32), _features(6, n=200, d=32, shift=0.2)
    s1, s2 = feature_stats(x).sigma, feature_stats(y).sigma
    eig, svd, sci = (trace_sqrt_product(s1, s2, m) for m in ("eigh", "svd", "scipy"))
    assert eig == pytest.approx(svd, rel=1e-9)
    assert eig == pytest.approx(sci, rel=1e-6)


def test_rank_deficient_covariance_stays_real_and_finite():
    x, y = _features(7, n=10, d=40), _features(8, n=10, d=40)  # fewer samples than dimensions
    fd = frechet_distance_from_features(x, y)
    assert np.isfinite(fd) and fd > 0
    assert abs(frechet_distance_from_features(x, x)) < 1e-9


def test_normaliser_n_vs_n_minus_1():
    x = _features(9, n=50)
    unbiased, biased = feature_stats(x, ddof=1), feature_stats(x, ddof=0)
    np.testing.assert_allclose(biased.sigma * 50 / 49, unbiased.sigma, rtol=1e-12)
    np.testing.assert_allclose(unbiased.sigma, np.cov(x, rowvar=False), rtol=1e-12)


def test_stats_save_load_round_trip(tmp_path):
    s = feature_stats(_features(10), ddof=0)
    s.save(tmp_path / "s.npz")
    t = GaussianStats.load(tmp_path / "s.npz")
    assert t.n == s.n and t.ddof == 0
    np.testing.assert_array_equal(t.sigma, s.sigma)


def _mmd_direct(x, y):
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kvd_matches_direct_formula():
    x, y = _features(11, n=25, d=8), _features(12, n=31, d=8, shift=0.3)
    assert polynomial_mmd2(x, y) == pytest.approx(_mmd_direct(x, y), rel=1e-10)


def test_kvd_is_unbiased_near_zero_for_same_distribution():
    x, y = _features(13, n=400, d=8), _features(13, n=400, d=8)[::-1].copy()
    far = polynomial_mmd2(_features(15, n=400, d=8, mix_seed=1), _features(16, n=400, d=8, mix_seed=1, shift=1.0))
    near = polynomial_mmd2(_features(15, n=400, d=8, mix_seed=1), _features(16, n=400, d=8, mix_seed=1))
    assert abs(near) < 0.05 * far
    assert polynomial_mmd2(x, y) < 0  # identical sets: the unbiased estimate removes self-similarity


def test_bootstrap_interval_contains_estimate():
    x, y = _features(17, n=120, d=6), _features(18, n=120, d=6, shift=0.5)
    fd = frechet_distance_from_features(x, y)
    lo, hi = bootstrap_ci(x, y, frechet_distance_from_features, n_boot=40, seed=0)
    assert lo < fd < hi
    assert (lo, hi) == bootstrap_ci(x, y, frechet_distance_from_features, n_boot=40, seed=0)
