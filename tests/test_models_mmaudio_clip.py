"""CLIP towers (DFN5B ViT-H/14) and the CLIP BPE tokenizer against open_clip 3.3.0 (fixtures made by running
open_clip itself; see tests/fixtures/mmaudio/clip/README.md)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench import weights
from avbench.errors import AvbenchError, CheckpointError, ModelConfigError, SampleError
from avbench.io import sha256_file
from avbench.models.mmaudio import clip as clip_mod
from avbench.models.mmaudio.clip import CLIP, CLIP_WEIGHTS, CLIPConfig, clip_weights, load_clip
from avbench.models.mmaudio.tokenizer import CLIPTokenizer, clean_text, load_tokenizer, pretokenize

FIX = Path(__file__).parent / "fixtures" / "mmaudio" / "clip"
VOCAB = FIX / "bpe_simple_vocab_16e6.txt.gz"
TOKENS = json.loads((FIX / "tokens.json").read_text())


def _rel(a: torch.Tensor, b: np.ndarray) -> float:
    ref = torch.from_numpy(b)
    return float((a - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def tiny_npz():
    return dict(np.load(FIX / "tiny.npz"))


@pytest.fixture()
def tiny_file(tiny_npz, tmp_path):
    """The seeded tiny open_clip model's state dict saved as a torch file, as the release is."""
    path = tmp_path / "tiny_open_clip.bin"
    torch.save({k[len("state."):]: torch.from_numpy(v) for k, v in tiny_npz.items() if k.startswith("state.")}, path)
    return path


# ---- towers -----------------------------------------------------------------------------------------
def test_state_dict_listing_equals_open_clip_vit_h_14_378_quickgelu():
    with torch.device("meta"):
        model = CLIP()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    want = json.loads((FIX / "listing_vit_h_14_378_quickgelu.json").read_text())
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}
    assert sum(int(np.prod(s)) for s in got.values()) == 986_714_881


def test_tiny_config_is_the_fixture_config():
    cfg = json.loads((FIX / "tiny_config.json").read_text())
    tiny = CLIPConfig.tiny()
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    assert (tiny.embed_dim, tiny.quick_gelu) == (cfg["embed_dim"], cfg["quick_gelu"])
    assert (tiny.image_size, tiny.patch_size, tiny.vision_width, tiny.vision_layers, tiny.vision_head_width) == (
        v["image_size"], v["patch_size"], v["width"], v["layers"], v["head_width"])
    assert (tiny.context_length, tiny.vocab_size, tiny.text_width, tiny.text_heads, tiny.text_layers) == (
        t["context_length"], t["vocab_size"], t["width"], t["heads"], t["layers"])


def test_tiny_parity_with_open_clip(tiny_npz, tiny_file, one_thread):
    model = load_clip(tiny_file, CLIPConfig.tiny())
    images, tokens = torch.from_numpy(tiny_npz["images"]), torch.from_numpy(tiny_npz["tokens"])
    with torch.no_grad():
        assert _rel(model.encode_image(images), tiny_npz["image_features"]) < 1e-5
        assert _rel(model.encode_image(images, normalize=False), tiny_npz["image_features_raw"]) < 1e-5
        hidden = model.encode_text(tokens)
        assert hidden.shape == (2, 16, 24)
        assert _rel(hidden, tiny_npz["text_hidden"]) < 1e-5
        assert _rel(model.encode_text(tokens, normalize=False), tiny_npz["text_hidden_raw"]) < 1e-5
        assert _rel(model.encode_text_pooled(tokens), tiny_npz["text_pooled"]) < 1e-5
    assert torch.allclose(hidden.norm(dim=-1), torch.ones(2, 16), atol=1e-5)


def test_pixels_past_the_patch_grid_are_ignored(tiny_file, one_thread):
    # The fixture feeds 30² to a 28² model (as MMAudio feeds 384² to the 378² checkpoint): same grid.
    model = load_clip(tiny_file, CLIPConfig.tiny())
    x = torch.randn(2, 3, 30, 30, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.encode_image(x), model.encode_image(x[..., :28, :28].contiguous()))
        with pytest.raises(SampleError, match="patch grid"):
            model.encode_image(torch.randn(1, 3, 35, 35))
    with pytest.raises(SampleError, match=r"\[B, 16\]"):
        model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    assert CLIPConfig().grid == CLIPConfig(image_size=378).grid == 27


def test_preprocess_uses_the_clip_statistics():
    x = torch.tensor(clip_mod.CLIP_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(CLIP.preprocess(x), torch.zeros(1, 3, 2, 2), atol=1e-7)
    one = CLIP.preprocess(torch.ones(3, 1, 1)).flatten()
    want = [(1 - m) / s for m, s in zip(clip_mod.CLIP_MEAN, clip_mod.CLIP_STD)]
    assert torch.allclose(one, torch.tensor(want))


def test_load_clip_refuses_a_mismatched_file_in_one_line(tiny_npz, tmp_path):
    sd = {k[len("state."):]: torch.from_numpy(v) for k, v in tiny_npz.items() if k.startswith("state.")}
    sd.pop("ln_final.bias")
    sd["visual.proj"] = torch.zeros(32, 8)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.bin"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        load_clip(path, CLIPConfig.tiny())
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "1 missing (first: ln_final.bias)" in msg and "1 unexpected (first: extra.weight)" in msg
    assert "visual.proj [32, 8]≠[32, 16]" in msg


def test_config_errors():
    with pytest.raises(ModelConfigError, match="head_width"):
        CLIPConfig(vision_width=30, vision_head_width=16)
    with pytest.raises(ModelConfigError, match="text_heads"):
        CLIPConfig(text_width=30, text_heads=4)


# ---- tokenizer --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return CLIPTokenizer(VOCAB)


def _needs_ftfy(record) -> bool:
    return clean_text(record["text"], use_ftfy=False) != record["cleaned"]


def test_vocab_fixture_is_the_registered_file():
    spec = weights.REGISTRY["clip-bpe-vocab"]
    assert sha256_file(VOCAB) == spec.sha256 == TOKENS["vocab_sha256"]
    assert VOCAB.stat().st_size == spec.size
    assert weights.resolve("clip-bpe-vocab", VOCAB)[1] == spec.sha256


def test_tokens_match_open_clip_on_the_real_vocab(tokenizer):
    assert (tokenizer.vocab_size, tokenizer.sot_token_id, tokenizer.eot_token_id) == (
        TOKENS["vocab_size"], TOKENS["sot"], TOKENS["eot"])
    records = [r for r in TOKENS["prompts"] if tokenizer.use_ftfy or not _needs_ftfy(r)]
    assert len(records) >= 30
    got = tokenizer([r["text"] for r in records])
    assert got.dtype == torch.long and got.shape == (len(records), 77)
    for row, r in zip(got.tolist(), records):
        assert row == r["ids"], r["text"]
    for r in records:
        assert tokenizer.encode(r["text"]) == r["encoded"], r["text"]


def test_long_prompts_are_cut_keeping_the_end_token(tokenizer):
    long = [r for r in TOKENS["prompts"] if len(r["encoded"]) > 75]
    assert len(long) == 2
    for r in long:
        row = tokenizer(r["text"])[0]
        assert row[0] == tokenizer.sot_token_id and row[-1] == tokenizer.eot_token_id
        assert row[1:-1].tolist() == r["encoded"][:75]
    assert tokenizer("", context_length=5).tolist() == [[tokenizer.sot_token_id, tokenizer.eot_token_id, 0, 0, 0]]


def test_without_ftfy_only_mojibake_is_cleaned_differently():
    differ = [r["text"] for r in TOKENS["prompts"] if _needs_ftfy(r)]
    assert differ == ["cafÃ© mojibake"]


def test_decode_spells_the_cleaned_text(tokenizer):
    # open_clip's decode: pieces back to UTF-8, end-of-word marks as spaces, so each pre-token + " "
    for r in TOKENS["prompts"][:16]:
        assert tokenizer.decode(r["encoded"]) == "".join(t + " " for t in pretokenize(r["cleaned"])), r["text"]
    assert tokenizer.decode(tokenizer("Hi")[0, :3]) == "<start_of_text>hi <end_of_text>"


# open_clip's pre-tokenizer pattern, the specification the unicodedata scanner follows.
_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def test_pretokenize_equals_open_clips_regex_on_random_text():
    regex = pytest.importorskip("regex")
    pat = regex.compile(_PATTERN, regex.IGNORECASE)
    pool = list("abcxyz'’sltrevmd ſ<>_!?.,-0123456789²½Ⅻ٣éüßкиж音楽한🎸\u0301 ") + ["<end_of_text>", "'ll", "'re"]
    rng = random.Random(0)
    for _ in range(400):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        assert pretokenize(text) == pat.findall(text), repr(text)
    for r in TOKENS["prompts"]:
        assert pretokenize(r["cleaned"]) == pat.findall(r["cleaned"]), r["text"]


@pytest.mark.parametrize("compress", [True, False])
def test_any_merges_file_of_the_same_format(tmp_path, compress):
    tiny = TOKENS["tiny"]
    data = "\n".join(tiny["merges"]).encode()
    path = tmp_path / ("merges.txt.gz" if compress else "merges.txt")
    path.write_bytes(gzip.compress(data) if compress else data)
    tok = CLIPTokenizer(path, context_length=tiny["context_length"])
    assert (tok.vocab_size, tok.sot_token_id, tok.eot_token_id) == (tiny["vocab_size"], tiny["sot"], tiny["eot"])
    for r in tiny["prompts"]:
        assert tok(r["text"])[0].tolist() == r["ids"], r["text"]


def test_bad_merges_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("#version: 0.2\nt h\nthree parts here\n")
    with pytest.raises(ModelConfigError, match=r"bad.txt: line 3 is not a merge"):
        CLIPTokenizer(bad)
    with pytest.raises(AvbenchError, match="no such BPE merges file"):
        CLIPTokenizer(tmp_path / "absent.txt.gz")


def test_load_tokenizer_uses_the_registry(monkeypatch, tmp_path):
    monkeypatch.setenv("AVBENCH_CLIP_VOCAB", str(VOCAB))
    assert load_tokenizer()("a dog barking")[0, :4].tolist() == CLIPTokenizer(VOCAB)("a dog barking")[0, :4].tolist()
    wrong = tmp_path / "other.txt.gz"
    wrong.write_bytes(gzip.compress(b"#version: 0.2\nt h\n"))
    with pytest.raises(weights.WeightsError):
        load_tokenizer(wrong)


# ---- weights ----------------------------------------------------------------------------------------
def test_missing_clip_weights_name_file_url_licence_and_flag(monkeypatch, tmp_path):
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_CLIP_WEIGHTS", raising=False)
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(weights.WeightsError) as err:
        clip_weights()
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("huggingface.co/apple/DFN5B-CLIP-ViT-H-14-378", "open_clip_pytorch_model.bin", "--clip-weights",
                 "$AVBENCH_CLIP_WEIGHTS", "model card", f"avbench weights fetch {CLIP_WEIGHTS}"):
        assert part in msg


def test_clip_weights_are_found_in_the_hugging_face_cache(monkeypatch, tmp_path):
    # A file where MMAudio's own open_clip run leaves it; a wrong one is refused by size, naming that path.
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("AVBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AVBENCH_CLIP_WEIGHTS", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "models--apple--DFN5B-CLIP-ViT-H-14-384"
    snap = repo / "snapshots" / "01b771ed0d1395ca5ffdd279897d665ebe00dfd2"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("01b771ed0d1395ca5ffdd279897d665ebe00dfd2")
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"not the weights")
    with pytest.raises(weights.WeightsChecksumError, match=str(snap / "open_clip_pytorch_model.bin")):
        clip_weights()
