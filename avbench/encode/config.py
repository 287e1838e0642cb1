"""Options of `avbench encode` (kept free of torch and the codecs, so building the command stays light)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avbench.compute import DEVICE_HELP, PRECISIONS, check_precision
from avbench.curate.partition import Partition


@dataclass(frozen=True)
class EncodeConfig:
    root: Path = field(metadata={"help": "Dataset root with pixel shards (ROOT/shards/index.json)."})
    vae: str = field(default="sd-mmaudio16k", metadata={
        "help": "Latent codec: sd-mmaudio16k | sd-audioldm2 (tiny, tiny-audioldm2: tests only; the list is "
                "avbench.models.latent.codec.CODECS)."})
    size: int = field(default=256, metadata={"help": "Frame size of the pixel shards to encode.", "min": 1})
    splits: tuple[str, ...] | None = field(default=None, metadata={
        "help": "Split(s) to encode (repeatable; default: every split at that size)."})
    partition: Partition = field(default=Partition(0, 1), metadata={
        "help": "Encode only slice I of N of the shards (0-based); the index is written once all are done."})
    video_vae: str | None = field(default=None, metadata={
        "help": "Video VAE: a hub id or a local diffusers AutoencoderKL folder (default: the codec's)."})
    audio_vae: str | None = field(default=None, metadata={
        "help": "Audio VAE: MMAudio v1-16.pth, or an AudioLDM 2 folder holding vae/ and vocoder/ (default: the "
                "weights registry / the hub id)."})
    vocoder: str | None = field(default=None, metadata={
        "help": "Vocoder: MMAudio best_netG.pt, or a SpeechT5HifiGan folder (AudioLDM 2; default: vocoder/)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP + "."})
    dtype: str = field(default="fp32", metadata={"help": f"Codec precision: {' | '.join(PRECISIONS)}."})
    frame_batch: int = field(default=16, metadata={"help": "Frames per video VAE call.", "min": 1})
    threads: int = field(default=0, metadata={
        "help": "torch CPU threads (0 = torch's default); fix it for byte-identical CPU reruns.", "min": 0})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "partition", Partition.parse(self.partition))
        check_precision(self.dtype)

    @property
    def paths(self):
        from avbench.models.latent.codec import CodecPaths

        return CodecPaths(self.video_vae, self.audio_vae, self.vocoder)
