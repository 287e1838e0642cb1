"""Test-only codecs (`tiny`, `tiny-audioldm2`): tiny random VAEs and vocoders built from configs with
seeded weights, WRITTEN TO DISK in the real formats (diffusers folders via `save_pretrained`, `.pth` state
dicts for the MMAudio port) and loaded back through the same loaders as the released weights.

`write_tiny_codec(name, folder)` writes one and returns its `CodecPaths`; a `tiny*` codec loaded without
paths is written once into the avbench cache (`<cache>/codecs/<name>-v1/`) and read from there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from avbench.models.latent.codec import CodecPaths
from avbench.models.latent.pretrained import quiet_hf
from avbench.paths import cache_dir

VERSION = "v1"
SEED = 0

# Channel counts divisible by the group norm's groups; 4 levels (8× down) like SD's VAE, 3 (4×) like AudioLDM's;
# the HiFi-GAN keeps AudioLDM 2's upsampling (hop 160) with 32 instead of 1024 channels.
TINY_VIDEO_VAE = {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 4,
                  "up_block_types": ("UpDecoderBlock2D",) * 4, "block_out_channels": (8, 8, 16, 16),
                  "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4, "sample_size": 64,
                  "scaling_factor": 0.18215}
TINY_AUDIOLDM_VAE = {"in_channels": 1, "out_channels": 1, "down_block_types": ("DownEncoderBlock2D",) * 3,
                     "up_block_types": ("UpDecoderBlock2D",) * 3, "block_out_channels": (8, 16, 16),
                     "layers_per_block": 1, "latent_channels": 8, "norm_num_groups": 4, "sample_size": 64,
                     "scaling_factor": 0.4110932946205139}
TINY_HIFIGAN = {"model_in_dim": 64, "sampling_rate": 16000, "upsample_initial_channel": 32,
                "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
                "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]], "normalize_before": False}


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build()


def _tiny_modules(name: str) -> dict[str, torch.nn.Module]:
    """Every seeded module of tiny codec `name`, by the relative path it is saved under."""
    from diffusers import AutoencoderKL

    mods: dict[str, torch.nn.Module] = {"video_vae": _seeded(lambda: AutoencoderKL(**TINY_VIDEO_VAE))}
    if name == "tiny":
        from avbench.models.mmaudio.bigvgan import BigVGAN
        from avbench.models.mmaudio.vae import AudioVAE

        mods["audio_vae.pth"] = _seeded(lambda: AudioVAE("tiny"))
        mods["vocoder.pth"] = _seeded(lambda: BigVGAN("tiny"))
    elif name == "tiny-audioldm2":
        from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

        mods["audioldm2/vae"] = _seeded(lambda: AutoencoderKL(**TINY_AUDIOLDM_VAE))
        mods["audioldm2/vocoder"] = _seeded(lambda: SpeechT5HifiGan(SpeechT5HifiGanConfig(**TINY_HIFIGAN)))
    else:
        raise ValueError(f"no tiny codec {name!r}")
    return mods


def tensor_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and values: a weights identity that does not depend on how the file
    was serialised (torch.save's bytes carry the archive name)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}\0{v.dtype}\0{tuple(state_dict[k].shape)}\0".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _paths(name: str, folder: Path) -> CodecPaths:
    if name == "tiny":
        return CodecPaths(str(folder / "video_vae"), str(folder / "audio_vae.pth"), str(folder / "vocoder.pth"))
    return CodecPaths(str(folder / "video_vae"), str(folder / "audioldm2"), None)


def write_tiny_codec(name: str, folder: str | os.PathLike[str]) -> CodecPaths:
    """Write the files of tiny codec `name` ("tiny" or "tiny-audioldm2") under `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for rel, module in _tiny_modules(name).items():
        if rel.endswith(".pth"):
            torch.save(module.state_dict(), folder / rel)
        else:
            with quiet_hf():  # transformers draws a "Writing model shards" bar even for one file
                module.save_pretrained(folder / rel)
    return _paths(name, folder)


def default_tiny_paths(name: str) -> CodecPaths:
    """The cached copy of tiny codec `name`, written on first use. The folder is named by a digest of the
    modules' weights, so a change to a tiny config or to the port's layout gets a fresh copy instead of a
    stale one; temp folder + rename, so concurrent first uses never see half-written files."""
    mods = _tiny_modules(name)
    tag = hashlib.sha256("".join(f"{k}:{tensor_digest(m.state_dict())}" for k, m in mods.items()).encode())
    final = cache_dir() / "codecs" / f"{name}-{VERSION}-{tag.hexdigest()[:12]}"
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=final.parent))
        write_tiny_codec(name, tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race: its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(name, final)


_NEEDED = {"tiny": ("video_vae", "audio_vae", "vocoder"), "tiny-audioldm2": ("video_vae", "audio_vae")}


def _with_defaults(paths: CodecPaths, name: str) -> CodecPaths:
    """Fill the parts not given with the cached tiny files."""
    if all(getattr(paths, f) for f in _NEEDED[name]):
        return paths
    d = default_tiny_paths(name)
    return CodecPaths(paths.video_vae or d.video_vae, paths.audio_vae or d.audio_vae, paths.vocoder or d.vocoder)


def load_tiny_video(paths: CodecPaths, *, device="cpu", dtype=torch.float32):
    from diffusers import AutoencoderKL

    from avbench.models.latent.pretrained import from_pretrained
    from avbench.models.latent.sd_video import DiffusersImageVAE, to_device

    source = paths.video_vae or default_tiny_paths("tiny").video_vae
    vae, prov = from_pretrained(AutoencoderKL.from_pretrained, source, subfolder=None, what="tiny video VAE",
                                licence="test weights", flag="--video-vae")
    return DiffusersImageVAE(to_device(vae, device, dtype), {**prov, "id": "tiny-video-vae"}, family="tiny")


def load_tiny_mmaudio(paths: CodecPaths, *, device="cpu", dtype=torch.float32):
    from avbench.models.latent.mmaudio16k import build_mmaudio_audio

    paths = _with_defaults(paths, "tiny")
    vae, voc = Path(paths.audio_vae), Path(paths.vocoder)
    codec = build_mmaudio_audio(vae, voc, mode="tiny", provenance={}, device=device, dtype=dtype)
    codec.provenance.update({
        part: {"id": f"tiny-{part}", "tensors_sha256": tensor_digest(module.state_dict()), "licence": "test weights"}
        for part, module in (("vae", codec.vae), ("vocoder", codec.vocoder))})
    return codec


def load_tiny_audioldm2(paths: CodecPaths, *, device="cpu", dtype=torch.float32):
    from avbench.models.latent.audioldm2 import load_audioldm2

    return load_audioldm2(_with_defaults(paths, "tiny-audioldm2"), device=device, dtype=dtype)
