"""CLAP score: mean cosine similarity between a text prompt and the generated audio, per sample.

We use transformers' `ClapModel` (the LAION-CLAP model family, e.g. `laion/clap-htsat-unfused`) rather than
the `laion-clap` package: that package pins numpy < 2 and fetches tokenizer files at import time. The model
folder (config, weights, tokenizer, feature-extractor files) must be local (`--clap-model` /
`$AVBENCH_CLAP_MODEL`); nothing is downloaded, and a folder without tokenizer files is refused rather than
run with an empty vocabulary. Audio is resampled to the feature extractor's rate (48 kHz) with soxr HQ, cut
to its first 10 s (deterministic, unlike the extractor's random crop) and repeat-padded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avbench.errors import MetricsError

ENV = "AVBENCH_CLAP_MODEL"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class ClapError(MetricsError, RuntimeError):
    pass


def resolve_model_dir(path: str | os.PathLike[str] | None) -> Path:
    chosen = path or os.environ.get(ENV)
    if not chosen:
        raise ClapError(f"--clap needs a local CLAP model folder (e.g. a copy of huggingface.co/laion/clap-htsat-unfused); "
                        f"pass --clap-model DIR or set ${ENV}")
    d = Path(chosen)
    if not (d / "config.json").is_file():
        raise ClapError(f"{d}: no config.json; point --clap-model / ${ENV} at a saved transformers ClapModel folder")
    if not any((d / f).is_file() for f in _TOKENIZER_FILES):
        raise ClapError(f"{d}: no tokenizer files ({' or '.join(_TOKENIZER_FILES)}); copy the model's tokenizer "
                        f"into the folder (refusing to score with an empty vocabulary)")
    return d


def _embedding(out):
    """transformers 4.x returns the projected embedding; 5.x wraps it as `pooler_output`."""
    return out if hasattr(out, "ndim") else out.pooler_output


class ClapScorer:
    def __init__(self, model_dir: str | os.PathLike[str] | None, device=None):
        d = resolve_model_dir(model_dir)
        try:
            from transformers import ClapModel, ClapProcessor
        except ImportError as exc:
            raise ClapError("--clap needs transformers: pip install 'avbench[clap]'") from exc
        import torch

        self.device = device or torch.device("cpu")
        self.processor = ClapProcessor.from_pretrained(str(d), local_files_only=True)
        if len(self.processor.tokenizer) < 100:
            raise ClapError(f"{d}: tokenizer vocabulary has only {len(self.processor.tokenizer)} entries; wrong files")
        self.model = ClapModel.from_pretrained(str(d), local_files_only=True).to(self.device).eval()
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.model_dir = d

    def scores(self, audios: list[tuple[np.ndarray, int]], prompts: list[str]) -> np.ndarray:
        import soxr
        import torch

        waves = [soxr.resample(np.asarray(a, np.float64), sr, self.sample_rate, quality="HQ").astype(np.float32)
                 if sr != self.sample_rate else np.asarray(a, np.float32) for a, sr in audios]
        fe = self.processor.feature_extractor
        # Cut to the model's window (10 s) ourselves: the extractor's "rand_trunc" would pick a random crop.
        waves = [w[: fe.nb_max_samples] for w in waves]
        fusion = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        with torch.inference_mode():
            t = self.processor.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
            a = fe(waves, sampling_rate=self.sample_rate, truncation="fusion" if fusion else "rand_trunc",
                   padding="repeatpad", return_tensors="pt").to(self.device)
            te = torch.nn.functional.normalize(_embedding(self.model.get_text_features(**t)), dim=-1)
            ae = torch.nn.functional.normalize(_embedding(self.model.get_audio_features(**a)), dim=-1)
        return (te * ae).sum(-1).double().cpu().numpy()
