"""Loading checkpoints: DDP prefixes, EMA wrappers, and refusal of files that need unpickling."""

import pytest
import torch

from avbench.models import MMUNet, MMUNetConfig
from avbench.models.state_dict import (UnsafeCheckpointError, clean_state_dict, compare_to_listing,
                                       safe_load, seeded_state_dict)


pytestmark = pytest.mark.usefixtures("one_thread")


class _Evil:
    """Unpickling this would run code; weights_only must refuse before that happens."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('executed')",))


def _model():
    return MMUNet(MMUNetConfig.tiny())


def test_ddp_prefixed_file_loads_into_a_fresh_model(tmp_path):
    src = _model()
    weights, _ = seeded_state_dict(src.state_dict(), 5)
    src.load_state_dict(weights)
    ddp_style = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save(ddp_style, tmp_path / "model100000.pt")
    dst = _model()
    dst.load_state_dict(clean_state_dict(safe_load(tmp_path / "model100000.pt")))
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_ema_wrapped_and_compiled_prefixes(tmp_path):
    sd = _model().state_dict()
    wrapped = {"step": 7, "model": {k: torch.zeros_like(v) for k, v in sd.items()},
               "ema": {f"module._orig_mod.{k}": v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "ema_0.9999_000100.pt")
    cleaned = clean_state_dict(safe_load(tmp_path / "ema_0.9999_000100.pt"))
    assert list(cleaned) == list(sd)  # the EMA copy wins over the raw model
    assert all(torch.equal(cleaned[k], sd[k]) for k in sd)
    listing = [[k, list(v.shape)] for k, v in sd.items()]
    assert compare_to_listing(cleaned, listing) == []
    assert compare_to_listing({}, listing[:1]) == [f"missing {listing[0][0]} {listing[0][1]}"]


def test_file_needing_arbitrary_unpickling_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt.*refused"):
        safe_load(path)


def test_missing_and_corrupt_files_give_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        safe_load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="bad.pt: not a readable torch checkpoint"):
        safe_load(bad)


def test_flipped_bytes_are_refused_before_unpickling(tmp_path):
    """torch.load checks no CRC: one changed bit in a tensor would load silently as another value."""
    from avbench.errors import CheckpointError

    sd = _model().state_dict()
    path = tmp_path / "model350000.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    raw = bytearray(path.read_bytes())
    at = raw.find(sd["time_embed.0.weight"].numpy().tobytes())
    raw[at + 2] ^= 0x01
    path.write_bytes(bytes(raw))
    assert not torch.equal(torch.load(path, weights_only=True)["module.time_embed.0.weight"], sd["time_embed.0.weight"])
    with pytest.raises(CheckpointError, match=r"model350000\.pt: damaged checkpoint: record .*data/\d+.* CRC-32"):
        safe_load(path)
