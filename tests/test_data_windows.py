"""The window loader: shapes, exact audio-video alignment, flips, train/eval modes, batch counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from avbench.data import WindowConfig, WindowDataset, make_loader
from avbench.data.decode import decode_video_window
from support.shardkit import encode_clip_mp4, level, make_sharded_root

SOURCES = {f"synth-5-{i}": [45, 16, 33] for i in range(4)}  # 45 frames: windows cross several 10-frame GOPs


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_sharded_root(tmp_path_factory.mktemp("loader"), SOURCES, seed=5, samples_per_shard=2)


def _frame_levels(video: torch.Tensor) -> list[int]:
    """Grey level of each frame, read right of the white bar (or left of it when flipped)."""
    right = video[:, :, :, 12:28].mean(dim=(1, 2, 3)) if _bar_left(video) else video[:, :, :, 4:20].mean(dim=(1, 2, 3))
    return [round(float(x)) for x in (right + 1) * 127.5]


def _bar_left(video: torch.Tensor) -> bool:
    return float(video[0, :, :, :2].mean()) > float(video[0, :, :, -2:].mean())


def _audio_levels(audio: torch.Tensor, frames: int) -> list[int]:
    return [round(float(x)) for x in audio[0].view(frames, 1600).mean(dim=1) * 256]


def test_items_have_the_contract_shapes_and_are_aligned(root):
    ds = WindowDataset(root, WindowConfig(size=32, split="train", seed=1)).with_epoch(40)
    items = list(ds)
    assert len(items) == 40
    starts = set()
    for it in items:
        assert it["video"].shape == (16, 3, 32, 32) and it["video"].dtype == torch.float32
        assert it["audio"].shape == (1, 16 * 1600) and it["audio"].dtype == torch.float32
        assert -1.0 <= float(it["video"].min()) and float(it["video"].max()) <= 1.0
        assert "." not in it["key"] and it["key"].startswith("synth-5-")
        truth = [level(it["start"] + k) for k in range(16)]
        assert _audio_levels(it["audio"], 16) == truth
        assert all(abs(v - t) <= 3 for v, t in zip(_frame_levels(it["video"]), truth)), (it["key"], it["start"])
        starts.add(it["start"])
    assert len(starts) > 5 and max(starts) > 10  # random starts, including ones past the first keyframe


def test_decoding_seeks_to_every_possible_window():
    mp4 = encode_clip_mp4(45, 32)
    for start in range(0, 30):
        frames = decode_video_window(mp4, start, 16)
        got = [round(float(f[:, 12:].mean())) for f in frames]
        assert all(abs(g - level(start + k)) <= 3 for k, g in enumerate(got)), start


def test_flip_has_a_real_probability(root):
    def bar_sides(p: float) -> list[bool]:
        ds = WindowDataset(root, WindowConfig(size=32, flip_p=p, seed=2)).with_epoch(60)
        return [_bar_left(it["video"]) for it in ds]

    assert all(bar_sides(0.0))
    assert not any(bar_sides(1.0))
    half = bar_sides(0.5)
    assert 15 <= sum(half) <= 45


def test_train_stream_is_seeded_and_changes_with_the_epoch(root):
    def keys(seed: int, epoch: int) -> list[tuple[str, int]]:
        ds = WindowDataset(root, WindowConfig(size=32, seed=seed)).with_epoch(12)
        ds.set_epoch(epoch)
        return [(it["key"], it["start"]) for it in ds]

    assert keys(0, 0) == keys(0, 0)
    assert keys(0, 0) != keys(0, 1)
    assert keys(0, 0) != keys(1, 0)


def test_eval_mode_is_fixed_and_covers_the_split_once(root):
    cfg = WindowConfig(size=32, mode="eval", eval_start=20)
    a = [(it["key"], it["start"]) for it in WindowDataset(root, cfg)]
    assert a == [(it["key"], it["start"]) for it in WindowDataset(root, cfg)]
    assert len(a) == 12 and len({k for k, _ in a}) == 12
    # 16-frame clips clamp the window to start 0; longer clips start at frame 20 when they can
    assert sorted({s for _, s in a}) == [0, 17, 20]


def test_train_loader_gives_the_promised_number_of_batches(root):
    loader = make_loader(root, WindowConfig(size=32, seed=3), batch_size=3, num_workers=2, batches_per_epoch=3)
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # rounded up to a multiple of the 2 workers
    assert all(b["video"].shape == (3, 16, 3, 32, 32) and b["audio"].shape == (3, 1, 25600) for b in batches)
    second = [b["key"] for b in loader]  # the loader advances the epoch: a new stream
    assert second != [b["key"] for b in batches]


def test_missing_split_or_index_is_one_clear_error(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'test' shards at 32 px"):
        WindowDataset(root, WindowConfig(size=32, split="test"))
    copy = Path(shutil.copytree(root, tmp_path / "r"))
    (copy / "shards" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="no shard index"):
        WindowDataset(copy, WindowConfig(size=32))


def test_loader_reads_the_demo_dataset(demo_dataset):
    loader = make_loader(demo_dataset, WindowConfig(size=64, split="test", mode="eval"), batch_size=2)
    batches = list(loader)
    assert len(batches) == len(loader) >= 1
    b = batches[0]
    assert b["video"].shape[1:] == (16, 3, 64, 64) and b["audio"].shape[1:] == (1, 25600)
    assert float(b["video"].std()) > 0.05 and float(b["audio"].abs().max()) > 0.01
    train = make_loader(demo_dataset, WindowConfig(size=64, seed=0, flip_p=0.5), batch_size=2, batches_per_epoch=2)
    assert [tuple(x["video"].shape) for x in train] == [(2, 16, 3, 64, 64)] * 2


def test_a_truncated_shard_is_skipped_with_a_warning_in_training(root, tmp_path):
    import json

    copy = Path(shutil.copytree(root, tmp_path / "r"))
    rows = json.loads((copy / "shards" / "index.json").read_text())["shards"]
    victim = copy / "shards" / rows[0]["path"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2 + 700])  # cut inside a member
    with pytest.warns(UserWarning, match=victim.name):
        items = list(WindowDataset(copy, WindowConfig(size=32, seed=4)).with_epoch(30))
    assert len(items) == 30
    with pytest.raises(Exception, match=victim.name):
        list(WindowDataset(copy, WindowConfig(size=32, mode="eval")))


def test_training_on_clips_shorter_than_a_window_fails_instead_of_spinning(root, monkeypatch):
    import avbench.data.windows as windows

    monkeypatch.setattr(windows, "MAX_BARREN_SAMPLES", 20)
    with pytest.raises(windows.DecodeError, match="no 50-frame window"):
        list(WindowDataset(root, WindowConfig(size=32, frames=50)).with_epoch(5))
