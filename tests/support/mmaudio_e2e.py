"""Inputs of the end-to-end MMAudio parity test (tests/fixtures/mmaudio/e2e): weights, source frames,
digests, and `StageTap`, which records what each stage of `generate_audio` hands the next.

The `tiny-16k` files are too large to commit (the network alone is ~3 MB), so the test rewrites them with
`write_e2e_weights` and checks their tensor digests against the ones the fixture recorded when the
original code loaded the same files. On top of `write_tiny_mmaudio` the latent and mel statistics are
redrawn: that recipe leaves them at 0 / 1, which would let an un-applied (un)normalisation pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avbench.models.mmaudio.bigvgan import load_vocoder, vocoder44_from_original
from avbench.models.mmaudio.network import build_network
from avbench.models.mmaudio.vae import AudioVAE, AudioVAEConfig
from avbench.models.state_dict import seeded_state_dict
from support.mmaudiokit import write_tiny_mmaudio

E2E_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "mmaudio" / "e2e"
WEIGHT_SEED = 0
STATS_SEED = 2027
SOURCE_REPEAT = 2  # each stored frame is shown twice at the source rate (README: why)


def _redraw_stats(path: Path, keys: tuple[str, str], gen: torch.Generator) -> None:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    mean_key, std_key = keys
    shape = sd[mean_key].shape
    sd[mean_key] = (0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)).float()
    sd[std_key] = (0.5 + torch.rand(shape, generator=gen, dtype=torch.float64)).float()
    torch.save(sd, path)


def write_e2e_weights(directory: str | Path) -> dict[str, Path]:
    """The tiny-16k files the e2e fixture was made with: `write_tiny_mmaudio(directory, 0)`, then one
    generator seeded 2027 redraws the network's `latent_mean` (0.3·N(0,1)) and `latent_std`
    (0.5 + U[0,1)), then the VAE's `data_mean` / `data_std` the same way (float64 draws, stored float32)."""
    paths = write_tiny_mmaudio(directory, seed=WEIGHT_SEED)
    gen = torch.Generator().manual_seed(STATS_SEED)
    _redraw_stats(paths["network"], ("latent_mean", "latent_std"), gen)
    _redraw_stats(paths["vae"], ("data_mean", "data_std"), gen)
    return paths


def tensor_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over sorted keys of key, dtype, shape and the raw bytes (independent of the pickle's bytes)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(list(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def file_digests(paths: Mapping[str, Path]) -> dict[str, str]:
    """role -> digest as the fixture's e2e.json records it (tensors for weights, file bytes for the vocab)."""
    out = {}
    for role, path in paths.items():
        if role == "vocab":
            out[role] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            continue
        sd = torch.load(path, map_location="cpu", weights_only=True)
        out[role] = tensor_digest(sd["generator"] if role == "vocoder" else sd)
    return out


def load_fixture() -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((E2E_DIR / "e2e.json").read_text(encoding="utf-8"))
    with np.load(E2E_DIR / "e2e.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def source_frames(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The source clip both sides saw: [200, 24, 32, 3] uint8 at 200 fps (stored frames, each twice)."""
    return np.repeat(arrays["source_unique"], SOURCE_REPEAT, axis=0)


STAGES = ("clip_f", "sync_f", "text_f", "negative_text_f", "x1", "latent", "mel")


class StageTap:
    """Wraps the bundle's parts (through pytest's `monkeypatch`, so they are restored) to record each
    stage's output as the original's fixture names it. With `feed`, each stage then passes on the
    ORIGINAL's value instead of its own, so every stage is compared on exactly the original's inputs
    and rounding differences do not travel down the chain; without it the chain runs free.

    Text rows are told apart by their token ids (`prompt_ids`, `negative_ids`), not by their order."""

    def __init__(self, bundle: Any, monkeypatch: Any, prompt_ids: list[int], negative_ids: list[int],
                 feed: Mapping[str, np.ndarray] | None = None):
        self.got: dict[str, torch.Tensor] = {}
        self.tokens: list[list[int]] = []
        self._feed = feed
        self._ids = {tuple(prompt_ids): "text_f", tuple(negative_ids): "negative_text_f"}
        self._sync: list[torch.Tensor] = []
        clip, net, vae = bundle.clip, bundle.network, bundle.vae
        encode_image, encode_text, unnormalize, decode = clip.encode_image, clip.encode_text, net.unnormalize, vae.decode

        def image(*args, **kwargs):
            out = encode_image(*args, **kwargs)
            return self._pass("clip_f", out, out[None])

        def text(tokens, *args, **kwargs):
            out = encode_text(tokens, *args, **kwargs)
            rows = []
            for row_ids, row in zip(tokens.tolist(), out, strict=True):
                self.tokens.append(row_ids)
                key = self._ids.get(tuple(row_ids))
                rows.append(row if key is None else self._pass(key, row, row[None]))
            return torch.stack(rows)

        def unnorm(x):
            self.got["x1"] = x.detach().clone()
            return self._pass("latent", unnormalize(x))

        def mel(z):
            return self._pass("mel", decode(z))

        monkeypatch.setattr(clip, "encode_image", image)
        monkeypatch.setattr(clip, "encode_text", text)
        monkeypatch.setattr(net, "unnormalize", unnorm)
        monkeypatch.setattr(vae, "decode", mel)
        self._handle = bundle.synchformer.register_forward_hook(self._sync_hook)

    def _pass(self, key: str, out: torch.Tensor, as_recorded: torch.Tensor | None = None) -> torch.Tensor:
        """Record `out` (in the fixture's layout, `as_recorded`); hand on the original's value if feeding."""
        self.got[key] = (out if as_recorded is None else as_recorded).detach().clone()
        if self._feed is None:
            return out
        return torch.from_numpy(self._feed[key]).reshape(out.shape).to(dtype=out.dtype, device=out.device)

    def _sync_hook(self, module, inputs, out):
        # segments may come in several batches; each call covers the next out.shape[0] of them, in order
        offset = sum(t.shape[0] for t in self._sync)
        self._sync.append(out.detach().clone())
        self.got["sync_f"] = torch.cat(self._sync).reshape(1, -1, out.shape[-1])
        if self._feed is None:
            return None
        ref = torch.from_numpy(self._feed["sync_f"]).reshape(-1, *out.shape[1:])
        return ref[offset:offset + out.shape[0]].to(out.dtype).to(out.device)

    def close(self) -> None:
        """Remove the Synchformer hook (the monkeypatched methods are restored by pytest)."""
        self._handle.remove()


def relative_error(got: np.ndarray | torch.Tensor, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (the measure every MMAudio parity fixture states)."""
    got = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    if got.shape != ref.shape:
        raise AssertionError(f"shape {got.shape} != fixture shape {ref.shape}")
    return float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())


# ---- the 44.1 kHz path: v1-44's VAE architecture and diffusers' MMAudioVocoder at toy widths -------------

VAE44 = AudioVAEConfig(mel_bins=128, latent_channels=4, hidden=8)
VOCODER44 = {"num_mels": 128, "upsample_initial_channel": 16, "upsample_rates": (8, 8, 8),
             "upsample_kernel_sizes": (16, 16, 16), "resblock_kernel_sizes": (3,), "resblock_dilation_sizes": ((1, 3, 5),)}
VAE44_SEED, VAE44_STATS_SEED = 5, 2028
VOCODER44_FILE = E2E_DIR / "bigvgan_v2_tiny.pt"  # the original's BigVGAN-v2 layout, as bigvgan_generator.pt


def write_e2e44_vae(directory: str | Path) -> Path:
    """The tiny 128-mel VAE the 44.1 kHz case ran with (v1-44.pth's layout): parameters by the seeded
    recipe (`seeded_state_dict`, seed 5), then `data_mean` / `data_std` redrawn as in `write_e2e_weights`
    from a generator seeded 2028."""
    path = Path(directory) / "vae44-tiny.pth"
    vae = AudioVAE(VAE44)
    sd = vae.state_dict()
    params = {name for name, _ in vae.named_parameters()}
    drawn, _ = seeded_state_dict({k: v for k, v in sd.items() if k in params}, VAE44_SEED)
    torch.save({k: drawn.get(k, v).clone().contiguous() for k, v in sd.items()}, path)
    _redraw_stats(path, ("data_mean", "data_std"), torch.Generator().manual_seed(VAE44_STATS_SEED))
    return path


def bundle_44k(bundle: Any, vae_path: Path, work_dir: Path) -> Any:
    """The tiny-16k bundle switched to the 44.1 kHz path: the same network weights with the 44.1 kHz
    latent rate, the tiny v1-44-style VAE and the fixture's BigVGAN-v2 mapped onto diffusers'
    `MMAudioVocoder` (saved as a diffusers folder and read back by `load_vocoder("44k", folder)`)."""
    from diffusers import MMAudioVocoder

    net = build_network(dataclasses.replace(bundle.network.config, sample_rate=44100))
    net.load_state_dict(bundle.network.state_dict())
    vae = AudioVAE(VAE44).drop_encoder()
    sd = torch.load(vae_path, map_location="cpu", weights_only=True)
    vae.load_state_dict({k: v for k, v in sd.items() if not k.startswith("encoder.")})
    vocoder = MMAudioVocoder(**VOCODER44)
    vocoder.load_state_dict(vocoder44_from_original(torch.load(VOCODER44_FILE, map_location="cpu", weights_only=True)))
    folder = Path(work_dir) / "vocoder44"
    vocoder.save_pretrained(str(folder))
    return dataclasses.replace(bundle, network=net.eval(), vae=vae.eval(), vocoder=load_vocoder("44k", folder))
