"""CogVideoX text→video through diffusers' `CogVideoXPipeline`: loading (hub id or local folder), the
original baseline's generation settings, and an identity for the weights that were used.

diffusers and transformers are optional (the `text2av` extra), so they are imported inside the functions.
Hub models come through `from_pretrained` with the user's Hugging Face cache (`--hf-cache`, else
`$HF_HOME`); without network or cache the error is one line naming the model id and `--video-model DIR`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avbench.errors import MissingInputError, SampleError, WeightsError
from avbench.io import sha256_file
from avbench.sample.mmaudio import parse_precision

DEFAULT_MODEL = "THUDM/CogVideoX-2b"  # the hub also answers to zai-org/CogVideoX-2b (the org's new name)
# What the original baseline script used (CogVideoX-2b's own recipe): 49 frames = 6 s at 8 fps plus the
# conditioning frame, 50 DDIM steps, guidance 6 with the cosine-ramped ("dynamic") CFG.
DEFAULT_FRAMES = 49
DEFAULT_FPS = 8
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 6.0
LICENCES = {
    "cogvideox-2b": "Apache-2.0 (CogVideoX-2B weights)",
    "cogvideox": "CogVideoX licence (CogVideoX-5B / 1.5 weights; see the model card)",
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class VideoModelError(WeightsError):
    """A CogVideoX model that cannot be loaded: not cached and no network, or not a diffusers folder."""


def licence_of(model: str) -> str:
    """The licence of a hub model by its name; a local folder's is whatever its model card says."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    if _is_path(model):
        return "see the folder's model card (local folder)"
    return LICENCES["cogvideox-2b"] if name == "cogvideox-2b" else LICENCES["cogvideox"]


def check_num_frames(num_frames: int, temporal_compression: int = 4) -> None:
    """The pipeline needs 1 + k·ratio frames (the 3D VAE keeps the first frame and packs each following
    group of `ratio` frames into one latent frame). Its decoder then upsamples the latents after the first
    in pairs, so only an even k decodes to exactly the frames asked for: 8N+1 (49) for ratio 4."""
    if num_frames < 1 or (num_frames - 1) % temporal_compression:
        raise SampleError(f"--frames {num_frames}: (frames - 1) must be divisible by {temporal_compression} "
                          f"(the VAE's temporal compression), e.g. {DEFAULT_FRAMES}")
    if (num_frames - 1) // temporal_compression % 2:
        raise SampleError(f"--frames {num_frames}: CogVideoX's VAE decodes the latents after the first in pairs, so it "
                          f"would return {num_frames + temporal_compression - 1} frames; use "
                          f"{2 * temporal_compression}N+1 frames, e.g. {DEFAULT_FRAMES}")


def _is_path(model: str) -> bool:
    """Hub ids are `org/name`; anything else (or anything that exists on disk) is a folder."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") != 1


def tree_digest(folder: Path) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs of a model folder. Hub snapshots link
    each large file to a blob named by its sha256, which is taken instead of re-hashing gigabytes."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        blob = Path(os.path.realpath(f)).name
        digest = blob if _HEX64.match(blob) else sha256_file(f)
        h.update(f"{f.relative_to(folder).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


@dataclass
class VideoModel:
    pipe: Any  # diffusers.CogVideoXPipeline
    info: dict[str, Any]  # id, source, folder digest, licence, dtype, offload, vae_tiling
    device: str


def _download(model: str, cache_dir: Path | None) -> Path:
    """The local snapshot folder of a hub model (downloaded into the HF cache when the network allows)."""
    from diffusers import CogVideoXPipeline
    from diffusers.utils import logging as dlog

    verbosity = dlog.get_verbosity()
    dlog.set_verbosity_error()  # its "couldn't connect, trying the cache" warning would precede our one line
    try:
        return Path(CogVideoXPipeline.download(model, cache_dir=str(cache_dir) if cache_dir else None))
    except (OSError, ValueError) as e:  # huggingface_hub's offline / not-found errors are OSErrors
        raise VideoModelError(
            f"{model}: not in the Hugging Face cache and not downloadable ({type(e).__name__}); it is fetched from "
            f"the Hugging Face hub (licence: {licence_of(model)}) — connect once, or pass a local diffusers "
            "folder with --video-model DIR") from None
    finally:
        dlog.set_verbosity(verbosity)


def load_cogvideox(model: str = DEFAULT_MODEL, *, dtype: str = "fp16", device: str = "cuda", offload: bool = False,
                   vae_tiling: bool = False, cache_dir: Path | None = None) -> VideoModel:
    """A ready `CogVideoXPipeline` from a hub id or a local diffusers folder."""
    try:
        from diffusers import CogVideoXPipeline
    except ImportError:
        raise SampleError('text→video needs diffusers and transformers: pip install -e ".[text2av]"') from None
    if offload and not str(device).startswith("cuda"):
        raise SampleError("--offload moves the parts between CPU and GPU as they run; use it with --device cuda")
    if offload:
        try:
            import accelerate  # noqa: F401  (diffusers' model offload is built on it)
        except ImportError:
            raise SampleError("--offload needs the accelerate package: pip install accelerate") from None
    torch_dtype = parse_precision(dtype, "--dtype")  # refuse a bad name before any download
    if _is_path(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise MissingInputError(f"--video-model {model}: no such folder; give a diffusers CogVideoX folder "
                                    f"or a hub id such as {DEFAULT_MODEL}")
        source = "local"
    else:
        folder, source = _download(model, cache_dir), "hub"
    if not (folder / "model_index.json").is_file():
        raise VideoModelError(f"{folder}: no model_index.json; --video-model needs a diffusers pipeline folder "
                              "(what CogVideoXPipeline.save_pretrained writes)")
    try:
        pipe = CogVideoXPipeline.from_pretrained(str(folder), dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VideoModelError(f"{folder}: not a loadable CogVideoX pipeline ({first}); check the folder") from None
    pipe.set_progress_bar_config(disable=True)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    info = {"id": model, "source": source, "folder": str(folder), "sha256_tree": tree_digest(folder),
            "licence": licence_of(model), "dtype": dtype, "offload": offload, "vae_tiling": vae_tiling,
            "class": type(pipe).__name__, "scheduler": type(pipe.scheduler).__name__,
            "temporal_compression": int(pipe.vae_scale_factor_temporal),
            "spatial_compression": int(pipe.vae_scale_factor_spatial)}
    return VideoModel(pipe, info, str(device))


def default_size(vm: VideoModel) -> tuple[int, int]:
    """(height, width) the transformer was trained at (480×720 for CogVideoX-2b)."""
    cfg = vm.pipe.transformer.config
    s = vm.pipe.vae_scale_factor_spatial
    return cfg.sample_height * s, cfg.sample_width * s


def generate_video(vm: VideoModel, prompt: str, *, seed: int, num_frames: int = DEFAULT_FRAMES,
                   height: int | None = None, width: int | None = None, steps: int = DEFAULT_STEPS,
                   guidance: float = DEFAULT_GUIDANCE, dynamic_cfg: bool = True) -> np.ndarray:
    """Frames uint8 [F, H, W, 3] for `prompt`. The initial latents come from a CPU generator seeded with
    `seed`, so a seed gives the same noise on every device."""
    import torch

    pipe = vm.pipe
    check_num_frames(num_frames, int(pipe.vae_scale_factor_temporal))
    dh, dw = default_size(vm)
    height, width = height or dh, width or dw
    unit = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size
    if height % unit or width % unit:
        raise SampleError(f"--height/--width {height}x{width}: both must be multiples of {unit} "
                          f"(VAE downsampling × transformer patch size)")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(prompt=prompt, num_frames=num_frames, height=height, width=width, num_inference_steps=steps,
               guidance_scale=guidance, use_dynamic_cfg=dynamic_cfg, generator=gen, output_type="np",
               max_sequence_length=pipe.transformer.config.max_text_seq_length)
    frames = np.asarray(out.frames[0], dtype=np.float32)  # [F, H, W, 3] in [0, 1]
    if len(frames) != num_frames:  # a VAE with another temporal rule than the one checked above
        raise SampleError(f"{vm.info['id']}: asked for {num_frames} frames, the pipeline returned {len(frames)}; "
                          "choose --frames the model's VAE decodes exactly (CogVideoX: 8N+1)")
    return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
