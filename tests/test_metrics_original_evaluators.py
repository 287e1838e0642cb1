"""Small numeric choices of the original evaluators (MM-Diffusion's KVD precision, StyleGAN-V's square root),
checked against formulas written here as those evaluators write them."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from avbench.metrics.frechet import feature_stats, frechet_distance
from avbench.metrics.kvd import polynomial_mmd2
from avbench.metrics.profiles import FVD_PROFILES


def _logit_like(seed, n, d=400, scale=5.0, shift=0.0):
    """Correlated features with the spread of I3D logits (kernel values ~1e3-1e4, where float32 rounding shows)."""
    rng = np.random.default_rng(seed)
    a = np.random.default_rng(99).normal(size=(d, d)) / np.sqrt(d) * scale
    return (rng.normal(size=(n, d)) @ a + shift).astype(np.float32)


def _mmdiffusion_kvd(x, y):
    # mm_diffusion/evaluator.py `polynomial_mmd`: scikit-learn kernels on the float32 logits, float32 sums.
    from sklearn.metrics.pairwise import polynomial_kernel

    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x), polynomial_kernel(y), polynomial_kernel(x, y)
    return ((kxx.sum() - np.diagonal(kxx).sum()) / (m * (m - 1)) + (kyy.sum() - np.diagonal(kyy).sum()) / (n * (n - 1))
            - 2 * kxy.sum() / (m * n))


def test_mmdiffusion_profile_computes_kvd_in_float32_like_its_evaluator():
    pytest.importorskip("sklearn")
    assert FVD_PROFILES["mmdiffusion"].kvd_dtype == "float32"
    assert FVD_PROFILES["tf"].kvd_dtype == FVD_PROFILES["styleganv"].kvd_dtype == "float64"
    x, y = _logit_like(0, 300), _logit_like(1, 280, shift=1.0)
    reference = _mmdiffusion_kvd(x, y)
    assert reference.dtype == np.float32
    assert polynomial_mmd2(x, y, dtype="float32") == float(reference)  # same operations, same rounding
    # the float64 default is a different number (by ~1e-7 relative), so the profile field is what reproduces it
    assert polynomial_mmd2(x, y, dtype="float64") != float(reference)
    assert polynomial_mmd2(x, y, dtype="float64") == pytest.approx(float(reference), rel=1e-5)


def test_unknown_kvd_dtype_is_refused():
    x = _logit_like(0, 8, d=4)
    with pytest.raises(ValueError, match="float16"):
        polynomial_mmd2(x, x, dtype="float16")


def _styleganv_fvd(x, y):
    # src/metrics/frechet_video_distance.py: N-normalised float64 statistics, scipy.linalg.sqrtm of Σ_gen Σ_real.
    def mean_cov(f):
        f = f.astype(np.float64)
        mu = f.sum(0) / len(f)
        return mu, f.T @ f / len(f) - np.outer(mu, mu)

    mu_gen, sigma_gen = mean_cov(x)
    mu_real, sigma_real = mean_cov(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, _ = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real), disp=False)
    return float(np.real(np.square(mu_gen - mu_real).sum() + np.trace(sigma_gen + sigma_real - s * 2)))


@pytest.mark.parametrize("n", [2048, 64])  # N > d (the protocol) and N < d (only with --allow-small)
def test_styleganv_profile_square_root_stays_within_1e6_of_scipy_sqrtm(n):
    # docs/metrics.md: the styleganv profile keeps the symmetric eigh root; against StyleGAN-V's sqrtm the
    # score moves by ~1e-7 relative on well-separated sets, for N above and below d.
    p = FVD_PROFILES["styleganv"]
    x, y = _logit_like(2, n, scale=1.0), _logit_like(3, n, scale=1.0, shift=0.5)
    ours = frechet_distance(feature_stats(x, p.ddof), feature_stats(y, p.ddof), p.sqrt)
    theirs = _styleganv_fvd(x, y)
    assert ours == pytest.approx(theirs, rel=1e-6)
    # the `scipy` cross-check path is StyleGAN-V's formula (its raw-moment covariance differs from our centred
    # one by ~1e-9 relative)
    assert frechet_distance(feature_stats(x, p.ddof), feature_stats(y, p.ddof), "scipy") == pytest.approx(theirs, rel=1e-8)
