"""Named metric protocols. A score is meaningless without its protocol, so each result records one."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FVDProfile:
    name: str
    resize: str  # "tf1_bilinear_squash" | "short_side_center_crop"
    weights: str  # key in avbench.metrics.weights.REGISTRY
    bn_eps: float
    ddof: int  # covariance normaliser N − ddof
    input_size: int | None = None  # clips are first brought to this square size (MM-Diffusion: 64)
    frames: int = 16
    resolution: int = 224
    sqrt: str = "eigh"
    statistics_dtype: str = "float64"
    network_precision: str = "float32 (no TF32)"
    feature: str = "i3d_kinetics400_logits_time_mean"

    def to_dict(self) -> dict:
        return asdict(self)


FVD_PROFILES: dict[str, FVDProfile] = {
    "tf": FVDProfile(name="tf", resize="tf1_bilinear_squash", weights="i3d", bn_eps=1e-3, ddof=1),
    "mmdiffusion": FVDProfile(
        name="mmdiffusion", resize="short_side_center_crop", weights="i3d-pt", bn_eps=1e-5, ddof=1, input_size=64
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
