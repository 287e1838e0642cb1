"""`load_strict`, the one strict loader behind the MMAudio CLIP, Synchformer, VAE, BigVGAN and network files."""

import pytest
import torch
from torch import nn

from avbench.errors import CheckpointError
from avbench.models.state_dict import load_strict, mismatch


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
        self.register_buffer("table", torch.zeros(2), persistent=False)

    def refill(self):
        self.register_buffer("table", torch.arange(2.0), persistent=False)


def _meta_net():
    with torch.device("meta"):
        return _Net()


def _file_sd(dtype=torch.float32):
    return {k: torch.full(v.shape, 0.5, dtype=dtype) for k, v in _Net().state_dict().items()}


def test_mismatch_counts_and_first_keys():
    want = {f"k{i}": (2,) for i in range(5)}
    assert mismatch({k: torch.zeros(s) for k, s in want.items()}, want) == ""
    have = {"k0": torch.zeros(3), "x": torch.zeros(1), "y": torch.zeros(1)}
    assert mismatch(have, want) == ("4 missing (first: k1, k2, k3); 2 unexpected (first: x, y); "
                                    "1 wrong shape (first: k0 [3]≠[2])")


def test_assigns_casts_and_refreshes():
    net = _meta_net()
    calls = []

    def fix():
        calls.append(1)
        return "never asked for"

    out = load_strict(net, _file_sd(torch.float16), "f.pth", "a test net", fix, dtype=torch.float32, refresh=net.refill)
    assert out is net and calls == []  # the hint costs work: only a mismatch pays for it
    assert net.a.weight.dtype == torch.float32 and not net.a.weight.is_meta and float(net.b.bias[0].detach()) == 0.5
    assert torch.equal(net.table, torch.arange(2.0))


def test_refuses_in_one_line_with_the_callers_hint(tmp_path):
    sd = _file_sd()
    sd["b.weight"] = torch.zeros(2, 5)
    del sd["a.bias"]
    with pytest.raises(CheckpointError) as e:
        load_strict(_meta_net(), sd, tmp_path / "bad.pth", "a test net", lambda: "it looks like another")
    assert str(e.value) == (f"{tmp_path / 'bad.pth'}: not a test net (1 missing (first: a.bias); "
                            "1 wrong shape (first: b.weight [2, 5]≠[2, 4])); it looks like another")


def test_a_tensor_left_on_meta_is_a_loader_bug_not_a_bad_file():
    with pytest.raises(RuntimeError, match=r"a test net: tensors not filled by the state dict: \['table'\]") as e:
        load_strict(_meta_net(), _file_sd(), "f.pth", "a test net", "unused")
    assert not isinstance(e.value, CheckpointError)
