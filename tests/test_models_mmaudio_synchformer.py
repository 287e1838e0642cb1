"""Synchformer port: key/shape parity with the original's full model, output parity on a tiny seeded
config (forward and MMAudio's segmentation), and the loader's refusals. Fixtures: see
tests/fixtures/mmaudio/synchformer/README.md."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avbench.errors import CheckpointError, SampleError
from avbench.models.mmaudio.synchformer import (
    SYNC_FPS,
    Synchformer,
    SynchformerConfig,
    encode_sync_frames,
    load_synchformer,
    num_sync_features,
)
from avbench.models.state_dict import compare_to_listing

pytestmark = pytest.mark.usefixtures("one_thread")

FIX = Path(__file__).parent / "fixtures" / "mmaudio" / "synchformer"
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    z = np.load(FIX / "tiny.npz")
    weights = {k[2:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("w/")}
    return weights, {k: torch.from_numpy(z[k]) for k in z.files if not k.startswith("w/")}


def _tiny_model(weights):
    model = Synchformer(SynchformerConfig.tiny()).eval()
    model.load_state_dict(weights, strict=True)
    return model


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_full_model_keys_and_shapes_equal_the_original_listing():
    listing = json.loads((FIX / "listing.json").read_text())
    with torch.device("meta"):
        model = Synchformer()
    sd = model.state_dict()
    assert compare_to_listing(sd, listing) == []
    assert list(sd) == [k for k, _ in listing]  # same order too: a listing diff reads line by line


def test_full_model_output_shape_is_8_vectors_of_768_per_segment():
    with torch.device("meta"):
        model = Synchformer()
        out = model(torch.empty(2, 3, 16, 3, 224, 224))
    assert tuple(out.shape) == (2, 3, 8, 768)
    # 8 s at 25 fps: 24 segments of 8, the 192-long sync sequence MMAudio's network expects
    assert num_sync_features(int(8 * SYNC_FPS)) == 192
    assert num_sync_features(15) == 0


def test_tiny_config_is_the_fixtures():
    want = json.loads((FIX / "tiny_config.json").read_text())
    c = SynchformerConfig.tiny()
    have = {"EMBED_DIM": c.embed_dim, "DEPTH": c.depth, "NUM_HEADS": c.num_heads, "PATCH_SIZE": c.patch_size,
            "PATCH_SIZE_TEMP": c.tubelet_frames, "TEMPORAL_RESOLUTION": c.frames_out,
            "MLP_RATIO": c.mlp_ratio, "IMAGE_SIZE": c.image_size}
    assert have == want


def test_forward_matches_the_original(tiny):
    weights, arrays = tiny
    with torch.no_grad():
        out = _tiny_model(weights)(arrays["forward_input"])
    assert out.shape == arrays["forward_output"].shape
    assert _rel(out, arrays["forward_output"]) <= TOL


def test_encode_sync_frames_matches_the_originals_segmentation(tiny):
    weights, arrays = tiny
    model = _tiny_model(weights)
    want = arrays["encode_output"]
    whole = encode_sync_frames(model, arrays["encode_frames"])
    assert whole.shape == want.shape == (2, 16, 32)
    assert _rel(whole, want) <= TOL
    one_at_a_time = encode_sync_frames(model, arrays["encode_frames"], batch_size=1)
    assert _rel(one_at_a_time, want) <= TOL
    # uint8 frames are read as 0-255
    as_bytes = (arrays["encode_frames"] * 255).round().to(torch.uint8)
    assert torch.allclose(encode_sync_frames(model, as_bytes), encode_sync_frames(model, as_bytes.float() / 255),
                          rtol=0, atol=1e-6)
    # frames after the last whole segment are not used (the original drops them too)
    longer = torch.cat([arrays["encode_frames"], torch.rand(2, 7, 3, 32, 32)], 1)
    assert torch.allclose(encode_sync_frames(model, longer), whole, rtol=0, atol=1e-6)


def test_loader_keeps_only_the_visual_encoder_and_matches(tiny, tmp_path):
    weights, arrays = tiny
    released_like = {**weights, "afeat_extractor.conv.weight": torch.zeros(2, 2),
                     "transformer.out.bias": torch.zeros(3)}
    path = tmp_path / "synchformer_state_dict.pth"
    torch.save(released_like, path)
    model = load_synchformer(path, SynchformerConfig.tiny())
    assert not model.training
    with torch.no_grad():
        out = model(arrays["forward_input"])
    assert _rel(out, arrays["forward_output"]) <= TOL


def _only_foreign_keys(sd):
    sd.clear()
    sd["afeat_extractor.conv.weight"] = torch.zeros(1)


@pytest.mark.parametrize("damage, words", [
    (lambda sd: sd.pop("vfeat_extractor.norm.bias"), "1 missing (first: vfeat_extractor.norm.bias)"),
    (lambda sd: sd.update({"vfeat_extractor.temp_embed": torch.zeros(1, 4, 32)}), "wrong shape"),
    (lambda sd: sd.update({"vfeat_extractor.head.weight": torch.zeros(1)}), "1 unexpected"),
    (_only_foreign_keys, "no 'vfeat_extractor.*' entries"),
], ids=["missing", "shape", "unexpected", "foreign"])
def test_loader_refuses_a_mismatched_file_in_one_line(tiny, tmp_path, damage, words):
    sd = dict(tiny[0])
    damage(sd)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_synchformer(path, SynchformerConfig.tiny())
    msg = str(e.value)
    assert str(path) in msg and words in msg and "\n" not in msg


def test_loader_names_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pth"):
        load_synchformer(tmp_path / "nothere.pth", SynchformerConfig.tiny())


def test_bad_frames_are_refused_in_one_line(tiny):
    model = _tiny_model(tiny[0])
    with pytest.raises(SampleError, match="15 frames is fewer than one segment"):
        encode_sync_frames(model, torch.rand(1, 15, 3, 32, 32))
    with pytest.raises(SampleError, match=r"expected \[batch, frames, 3, 32, 32\]"):
        encode_sync_frames(model, torch.rand(1, 16, 3, 224, 224))
    with pytest.raises(SampleError, match="expected"):
        model(torch.rand(1, 1, 8, 3, 32, 32))
