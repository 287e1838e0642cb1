"""CLAP scorer: a missing model or tokenizer is a clear error, never an empty-vocabulary run."""

import pytest

from avbench.metrics import clap


def test_missing_model_names_flag_and_env(monkeypatch):
    monkeypatch.delenv(clap.ENV, raising=False)
    with pytest.raises(clap.ClapError, match="--clap-model") as err:
        clap.resolve_model_dir(None)
    assert clap.ENV in str(err.value)


def test_folder_without_tokenizer_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(clap.ClapError, match="empty vocabulary"):
        clap.resolve_model_dir(tmp_path)
    with pytest.raises(clap.ClapError, match="config.json"):
        clap.resolve_model_dir(tmp_path / "nothing")


def _tiny_clap_folder(path):
    """A randomly initialised, tiny transformers CLAP model with a real byte-level BPE tokenizer."""
    import json

    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    # GPT-2 byte-level alphabet: printable bytes stand for themselves, the others are shifted past 255.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in keep]
    for ch in [chr(b) for b in keep] + [chr(256 + i) for i in range(len(shifted))]:
        vocab.setdefault(ch, len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = RobertaTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tok).save_pretrained(str(path))
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80),
        audio_config=dict(depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], patch_embeds_hidden_size=8,
                          hidden_size=64, projection_hidden_size=32),
        projection_dim=16,
    )
    import torch

    torch.manual_seed(0)
    ClapModel(cfg).save_pretrained(str(path))
    return path


def test_scorer_with_a_tiny_local_model(tmp_path):
    pytest.importorskip("transformers", reason="CLAP is an optional extra: pip install 'avbench[clap]'")
    import numpy as np

    d = _tiny_clap_folder(tmp_path / "clap")
    scorer = clap.ClapScorer(d)
    assert scorer.sample_rate == 48000
    rng = np.random.default_rng(0)
    audios = [(rng.normal(0, 0.1, 16000 * 2).astype(np.float32), 16000) for _ in range(2)]
    s = scorer.scores(audios, ["a dog barks", "rain on a roof"])
    assert s.shape == (2,) and np.all(np.abs(s) <= 1.0 + 1e-6)
    again = clap.ClapScorer(d).scores(audios, ["a dog barks", "rain on a roof"])
    np.testing.assert_allclose(s, again, rtol=1e-5, atol=1e-6)


def test_eval_command_reads_prompts_and_scores_clap(tmp_path):
    pytest.importorskip("transformers", reason="CLAP is an optional extra: pip install 'avbench[clap]'")
    import json

    from typer.testing import CliRunner

    from avbench.cli import app

    from support.evalkit import make_sample_folder

    gen = make_sample_folder(tmp_path / "gen", 2, "a")  # samples.json carries one prompt per sample
    d = _tiny_clap_folder(tmp_path / "clap")
    res = CliRunner().invoke(app, ["eval", "--samples", str(gen), "--clap", "--clap-model", str(d),
                                   "--results-dir", str(tmp_path / "r"), "--name", "c"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "r" / "c.json").read_text())
    assert rec["protocols"]["clap"]["n_scored"] == 2 and -1.0 <= rec["scores"]["clap"] <= 1.0
