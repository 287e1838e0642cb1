"""AudioLDM 2's audio side (cvssp/audioldm2): log-mel front end → 2-D VAE → HiFi-GAN vocoder.

Front end (what AudioLDM's VAE was trained on; diffusers' AudioLDM2 pipeline only decodes, so the
encoder side is written here): 16 kHz mono, STFT magnitude with n_fft 1024, hop 160, a periodic Hann
window of 1024, centred with reflect padding; 64 Slaney mel bands 0–8000 Hz (librosa's filter bank);
natural log of max(mel, 1e-5). Frames are at 100 Hz; the centred STFT's extra last frame is dropped so
N samples give N/160 frames (the decoder side never produces it either). The mel is laid out
[B, 1, T, 64] (time before frequency), as the pipeline's VAE and `SpeechT5HifiGan` expect. No loudness
normalisation is applied before the mel: the latent must decode back to the clip's own level.

The VAE (diffusers `AutoencoderKL`, 1 input channel) downsamples 4× in both axes: [B, 8, T/4, 16]
at 25 Hz, scaled by the config's `scaling_factor` (0.4110932946205139 for cvssp/audioldm2). For the
MM-UNet's 1-D audio branch it is FLATTENED to [B, 8·16 = 128, T/4]:

    flat[b, c·16 + f, t] = latent[b, c, t, f]     (c latent channel, f latent frequency row, low → high)

so one latent time step is one column and channels are grouped by VAE channel. One latent covers
640 samples (40 ms); the decoder's vocoder output is cut (or zero-padded) to exactly T'·640 samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avbench.errors import WeightsError
from avbench.models.latent.codec import CodecPaths
from avbench.models.latent.pretrained import from_pretrained
from avbench.models.latent.sd_video import to_device

AUDIOLDM2_ID = "cvssp/audioldm2"
AUDIOLDM2_LICENCE = "CC-BY-NC-SA-4.0, per its model card: non-commercial use only"
SAMPLE_RATE, N_FFT, HOP, WIN, N_MELS, FMIN, FMAX, LOG_FLOOR = 16000, 1024, 160, 1024, 64, 0.0, 8000.0, 1e-5


class AudioLDMMel(torch.nn.Module):
    """Waveform [B, N] → log-mel [B, N // 160, 64] (see the module docstring)."""

    def __init__(self):
        super().__init__()
        import librosa

        basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
        self.register_buffer("basis", torch.from_numpy(np.asarray(basis, dtype=np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(WIN, periodic=True), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave.float().clamp(-1.0, 1.0)
        spec = torch.stft(wave, N_FFT, hop_length=HOP, win_length=WIN, window=self.window.to(wave.device),
                          center=True, pad_mode="reflect", return_complex=True).abs()
        mel = torch.matmul(self.basis.to(wave.device), spec[..., : wave.shape[-1] // HOP])
        return torch.log(mel.clamp(min=LOG_FLOOR)).transpose(1, 2)


def flatten_latent(z: torch.Tensor) -> torch.Tensor:
    """[B, C, T', F'] → [B, C·F', T'] with channel index c·F' + f."""
    b, c, t, f = z.shape
    return z.permute(0, 1, 3, 2).reshape(b, c * f, t)


def unflatten_latent(flat: torch.Tensor, channels: int) -> torch.Tensor:
    """[B, C·F', T'] → [B, C, T', F'] (inverse of `flatten_latent`)."""
    b, cf, t = flat.shape
    return flat.reshape(b, channels, cf // channels, t).permute(0, 1, 3, 2)


class AudioLDM2Audio:
    """AudioLDM 2 VAE + HiFi-GAN as an `AudioVAE` (flattened 1-D latents)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, vae, vocoder, vae_prov: dict[str, Any], vocoder_prov: dict[str, Any]):
        self.vae = vae.eval().requires_grad_(False)
        self.vocoder = vocoder.eval().requires_grad_(False)
        self.mel = AudioLDMMel()
        cfg = vae.config
        self.vae_down = 2 ** (len(cfg.block_out_channels) - 1)
        voc_hop = int(np.prod(vocoder.config.upsample_rates))
        if N_MELS % self.vae_down or int(vocoder.config.model_in_dim) != N_MELS or voc_hop != HOP:
            raise WeightsError(f"AudioLDM 2 parts do not fit: VAE downsamples {self.vae_down}×, vocoder takes "
                               f"{vocoder.config.model_in_dim} mel bands at hop {voc_hop}, the front end makes "
                               f"{N_MELS} at hop {HOP}")
        self.latent_channels = int(cfg.latent_channels)
        self.freq_rows = N_MELS // self.vae_down
        self.channels = self.latent_channels * self.freq_rows
        self.samples_per_latent = HOP * self.vae_down
        self.scale = float(cfg.scaling_factor)
        self.vae_prov, self.vocoder_prov = vae_prov, vocoder_prov
        p = next(vae.parameters())
        self.device, self.dtype = p.device, p.dtype

    @torch.no_grad()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.mel(wave.to(self.device)).unsqueeze(1).to(self.dtype)  # [B, 1, T, 64]
        z = self.vae.encode(mel).latent_dist.mean * self.scale
        return flatten_latent(z.float())

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        z = unflatten_latent(latent.to(self.device, self.dtype), self.latent_channels) / self.scale
        mel = self.vae.decode(z).sample[:, 0]  # [B, T, 64]
        wave = self.vocoder(mel.to(next(self.vocoder.parameters()).dtype)).float()
        n = latent.shape[-1] * self.samples_per_latent
        return torch.nn.functional.pad(wave, (0, max(0, n - wave.shape[-1])))[..., :n]

    def describe(self) -> dict[str, Any]:
        return {"family": "audioldm2", "vae": {**self.vae_prov, "scaling_factor": self.scale,
                                                "latent_channels": self.latent_channels, "downsample": self.vae_down},
                "vocoder": self.vocoder_prov,
                "mel": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "win": WIN, "n_mels": N_MELS,
                        "fmin": FMIN, "fmax": FMAX, "log": f"ln(max(mel, {LOG_FLOOR}))", "norm": "slaney"},
                "layout": f"[C·F', T'] = [{self.latent_channels}·{self.freq_rows}, T'], index c·{self.freq_rows} + f",
                "posterior": "mean"}


def load_audioldm2(paths: CodecPaths, *, device="cpu", dtype=torch.float32) -> AudioLDM2Audio:
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    source = paths.audio_vae or AUDIOLDM2_ID
    problems, vae, vocoder = [], None, None
    try:
        vae, vae_prov = from_pretrained(AutoencoderKL.from_pretrained, source, subfolder="vae",
                                        what="audio VAE (AudioLDM 2)", licence=AUDIOLDM2_LICENCE, flag="--audio-vae")
    except WeightsError as e:
        problems.append(str(e))
    voc_source, voc_sub = (paths.vocoder, None) if paths.vocoder else (source, "vocoder")
    try:
        vocoder, voc_prov = from_pretrained(SpeechT5HifiGan.from_pretrained, voc_source, subfolder=voc_sub,
                                            what="vocoder (AudioLDM 2 HiFi-GAN)", licence=AUDIOLDM2_LICENCE,
                                            flag="--vocoder (or --audio-vae with a vocoder/ subfolder)")
    except WeightsError as e:
        problems.append(str(e))
    if problems:
        raise WeightsError("\n".join(problems))
    # AudioLDM's VAE config asks for fp32 (force_upcast); the vocoder follows the requested dtype
    return AudioLDM2Audio(vae.to(device), to_device(vocoder, device, dtype),
                          vae_prov, voc_prov)
