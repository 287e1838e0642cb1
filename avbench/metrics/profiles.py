"""Named metric protocols. A score is meaningless without its protocol, so each result records one."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FVDProfile:
    name: str
    resize: str  # "tf1_bilinear_squash" | "short_side_center_crop"
    weights: str  # key in avbench.weights.REGISTRY
    bn_eps: float
    ddof: int  # covariance normaliser N − ddof
    input_size: int | None = None  # clips are first brought to this square size (MM-Diffusion: 64)
    frames: int = 16
    resolution: int = 224
    sqrt: str = "eigh"
    statistics_dtype: str = "float64"
    kvd_dtype: str = "float64"  # kernels and sums of KVD on these features; MM-Diffusion's are float32
    network_precision: str = "float32 (no TF32)"
    feature: str = "i3d_kinetics400_logits_time_mean"

    def to_dict(self) -> dict:
        return asdict(self)


FVD_PROFILES: dict[str, FVDProfile] = {
    "tf": FVDProfile(name="tf", resize="tf1_bilinear_squash", weights="i3d", bn_eps=1e-3, ddof=1),
    "mmdiffusion": FVDProfile(
        name="mmdiffusion", resize="short_side_center_crop", weights="i3d-pt", bn_eps=1e-5, ddof=1, input_size=64,
        kvd_dtype="float32",
    ),
    "styleganv": FVDProfile(name="styleganv", resize="tf1_bilinear_squash", weights="i3d", bn_eps=1e-3, ddof=0),
}


@dataclass(frozen=True)
class FADProfile:
    name: str
    sample_rate: int = 16000
    resampler: str = "soxr-HQ"
    mono: str = "mean_of_channels"
    window_s: float | None = None  # None: whole clip framed into 0.96 s examples; else windows of this length
    hop_s: float | None = None
    peak_normalise: bool = False  # x / max(0.1, max x) per clip (signed max, as google-research)
    embedding: str = "vggish_128_preactivation_no_pca"
    pooling: str = "all_examples_of_all_files"
    ddof: int = 1
    sqrt: str = "eigh"
    statistics_dtype: str = "float64"

    def to_dict(self) -> dict:
        return asdict(self)


FAD_PROFILES: dict[str, FADProfile] = {
    # av-benchmark / audioldm_eval / fadtk convention: non-overlapping 0.96 s examples of each clip.
    "vggish": FADProfile(name="vggish"),
    # google-research frechet_audio_distance defaults: 1 s windows every 0.5 s, peak-normalised input.
    "google": FADProfile(name="google", window_s=1.0, hop_s=0.5, peak_normalise=True),
}

KVD_PROTOCOL = {
    "kernel": "polynomial",
    "degree": 3,
    "gamma": "1/d",
    "coef0": 1.0,
    "estimator": "unbiased_mmd2_full_sets",
    "scale": 1.0,
    "features": "same as FVD profile",
}


@dataclass(frozen=True)
class AudioCLIPProfile:
    """AudioCLIP-FAD: Fréchet distance of AudioCLIP audio-head embeddings × `scale` (never called plain FAD).

    MM-Diffusion's published "FAD" is this with the `mmdiffusion` profile; `quirks` names what its evaluator
    does that the corrected `audioclip` profile does not.
    """

    name: str
    batch_norm: str  # "running_stats" (eval mode) | "batch_stats" (train-mode BN over each batch)
    input_scale: str  # "int16" (x·32768, what the head was trained on) | "unit" ([-1, 1] fed as if int16)
    frechet: str  # "float64_eigh" | "mmdiffusion_float32_svd" (its evaluations/fvd/fvd.py in float32 torch)
    quirks: tuple[str, ...] = ()
    scale: float = 10_000.0  # MM-Diffusion: ×10,000 since June 2024 (×1,000 before; its issue #17)
    batch_size: int = 8  # clips per BatchNorm batch (MM-Diffusion: 8 per process)
    batch_order: str = "sorted_clip_keys"  # batch-mates decide batch-stats embeddings: fix who they are
    sample_rate: int = 44_100
    clip_samples: int = 70_560  # 1.6 s
    channel: str = "first"
    pad: str = "zeros_at_end_or_truncate"
    resampler: str = "soxr-HQ"  # MM-Diffusion decodes with moviepy/ffmpeg at 44.1 kHz: not reproducible here
    embedding: str = "audioclip_esresnext_fbsp_fc1024_unnormalised"
    weights: str = "audioclip"  # key in avbench.weights.REGISTRY
    ddof: int = 1
    network_precision: str = "float32 (no TF32)"

    def to_dict(self) -> dict:
        return asdict(self)


AUDIOCLIP_PROFILES: dict[str, AudioCLIPProfile] = {
    "mmdiffusion": AudioCLIPProfile(
        name="mmdiffusion", batch_norm="batch_stats", input_scale="unit", frechet="mmdiffusion_float32_svd",
        quirks=(
            ("batchnorm_train_mode: AudioCLIP is never put in eval mode, so every BatchNorm normalises with the "
             "statistics of its evaluation batch (8 clips, sorted keys here); embeddings depend on batch-mates "
             "and a batch of 1 fails"),
            ("double_scaling: [-1, 1] floats go into a front end expecting int16 values, which maps "
             "[-32768, 32767] to [-1, 1] again: the signal becomes (2x + 1)/65535 in float32 (~90 dB quieter, "
             "DC offset 1/65535, ~9 bits of resolution left by the rounding of x + 32768)"),
        ),
    ),
    "audioclip": AudioCLIPProfile(name="audioclip", batch_norm="running_stats", input_scale="int16",
                                  frechet="float64_eigh"),
}
