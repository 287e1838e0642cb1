"""Fréchet distance between Gaussians fitted to feature sets (FVD, FAD, FID all reduce to this).

Everything is float64. The trace term Tr √(Σ1 Σ2) is computed through the symmetric form
Tr √(Σ1^½ Σ2 Σ1^½), whose matrix is symmetric positive semi-definite, so an eigendecomposition (or SVD)
gives it exactly, without complex parts. `scipy.linalg.sqrtm` is kept only as a cross-check path: it is
wrong (scipy 1.11.2-1.11.3), returns large imaginary parts (1.12) or changed signature (1.18) on several
versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from avbench.io import atomic_path

SqrtMethod = Literal["eigh", "svd", "scipy"]


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a feature set; `ddof` is 1 for the N−1 normaliser, 0 for N (StyleGAN-V)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    ddof: int = 1

    def save(self, path: str | Path) -> None:

        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mu=self.mu, sigma=self.sigma, n=self.n, ddof=self.ddof)

    @classmethod
    def load(cls, path: str | Path) -> "GaussianStats":
        with np.load(path) as z:
            return cls(mu=z["mu"], sigma=z["sigma"], n=int(z["n"]), ddof=int(z["ddof"]))


def feature_stats(features: np.ndarray, ddof: int = 1) -> GaussianStats:
    """Fit a Gaussian to `features` [N, d] in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, d], got shape {x.shape}")
    n = x.shape[0]
    if n <= ddof:
        raise ValueError(f"need more than {ddof} feature vectors for a covariance, got {n}")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (n - ddof)
    return GaussianStats(mu=mu, sigma=sigma, n=n, ddof=ddof)


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    # Eigenvalues below max·d·eps are round-off of a PSD matrix (negative ones included): they are set to
    # zero, as a pseudo-inverse would, because √ of that noise (~1e-8) would otherwise add up.
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _psd_sqrt_eigh(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: SqrtMethod = "eigh") -> float:
    """Tr √(Σ1 Σ2) for symmetric PSD Σ1, Σ2."""
    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    if method == "eigh":
        r = _psd_sqrt_eigh(s1)
        m = r @ s2 @ r
        w = np.linalg.eigvalsh((m + m.T) / 2)
        return float(np.sqrt(_clip_eigenvalues(w)).sum())
    if method == "svd":
        # For a symmetric PSD matrix U == V in its SVD, so U diag(√s) Uᵀ is its square root (TF-GAN route).
        u, s, _ = np.linalg.svd(s1)
        r = (u * np.sqrt(_clip_eigenvalues(s))) @ u.T
        sv = np.linalg.svd(r @ s2 @ r, compute_uv=False)
        return float(np.sqrt(_clip_eigenvalues(sv)).sum())
    if method == "scipy":
        import scipy.linalg

        root = scipy.linalg.sqrtm(s1 @ s2)
        root = root[0] if isinstance(root, tuple) else root
        return float(np.real(np.trace(root)))
    raise ValueError(f"unknown square-root method {method!r}; use 'eigh', 'svd' or 'scipy'")


def frechet_distance(a: GaussianStats, b: GaussianStats, sqrt: SqrtMethod = "eigh") -> float:
    """‖μ1−μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    tr = trace_sqrt_product(a.sigma, b.sigma, sqrt)
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr)


def frechet_distance_from_features(x: np.ndarray, y: np.ndarray, ddof: int = 1, sqrt: SqrtMethod = "eigh") -> float:
    return frechet_distance(feature_stats(x, ddof), feature_stats(y, ddof), sqrt)


def bootstrap_ci(
    x: np.ndarray,
    y: np.ndarray,
    score_fn,
    n_boot: int = 100,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `score_fn(x*, y*)`, both sets resampled with replacement."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        xi = x[rng.integers(0, len(x), len(x))]
        yi = y[rng.integers(0, len(y), len(y))]
        vals.append(score_fn(xi, yi))
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
