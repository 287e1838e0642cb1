"""Review fixes in training / diffusion: guided-diffusion's `ddimN` and section spacing, and per-rank data
positions in training checkpoints (exact resume after a loader failure on one rank only)."""

from __future__ import annotations

import socket

import pytest
import torch

from avbench.diffusion.respace import space_timesteps


def _guided_diffusion_ddim(T: int, n: int) -> list[int]:
    """guided-diffusion's rule, restated: the smallest integer stride giving exactly n timesteps."""
    for stride in range(1, T):
        if len(range(0, T, stride)) == n:
            return list(range(0, T, stride))
    raise ValueError(n)


@pytest.mark.parametrize("n", [10, 15, 25, 30, 35, 40, 250])
def test_ddim_spec_is_guided_diffusions_stride_grid(n):
    assert space_timesteps(1000, f"ddim{n}") == _guided_diffusion_ddim(1000, n)


def test_ddim_spec_without_an_exact_stride_and_single_step_sections():
    grid = space_timesteps(1000, "ddim300")  # guided-diffusion has no integer stride for this: keep working
    assert len(grid) == 300 and grid == sorted(set(grid))
    # guided-diffusion: a section of count 1 keeps its first timestep
    assert space_timesteps(100, "1,3") == [0, 50, 74, 99]
    with pytest.raises(ValueError):
        space_timesteps(3, "1,1,1,1")


# ---- per-rank data positions ----------------------------------------------------------------------------

SMALL = ["data.frames=4", "data.batch_size=2", "model.overrides.model_channels=8", "log.every=1",
         "log.preview_every=0", "log.tensorboard=false", "checkpoint.every=1000", "optim.warmup_steps=2",
         "data.epoch_batches=3", "train.device=\"cpu\""]


def _epochs_failing_on_rank1(cfg):
    """Deterministic batches; rank 1's loader fails after one batch of epoch 0 (a shard it cannot step over)."""
    f, b = cfg.data.frames, cfg.data.batch_size

    def make_epoch(epoch, seed, rank, world):
        g = torch.Generator().manual_seed(seed * 1_000_003 + rank * 1009 + epoch)
        for i in range(cfg.data.epoch_batches):
            if rank == 1 and epoch == 0 and i == 1:
                raise OSError("damaged shard")
            level = torch.rand(b, 1, 1, 1, 1, generator=g) * 2 - 1
            video = level.expand(b, f, 3, 64, 64) + 0.05 * torch.randn(b, f, 3, 64, 64, generator=g)
            audio = level.reshape(b, 1, 1).expand(b, 1, f * 1600).contiguous()
            yield {"video": video, "audio": audio}

    return make_epoch


def _worker(rank: int, world: int, port: int, overrides: list[str], run: str) -> None:
    import os
    import warnings

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from avbench.train.config import load_config
    from avbench.train.loop import train

    cfg = load_config("tiny", SMALL + overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg, run, make_epoch=_epochs_failing_on_rank1(cfg), console=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(overrides, run):
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), overrides, str(run)), nprocs=2, join=True)


def test_resume_after_a_loader_failure_on_one_rank_is_exact(tmp_path):
    _run(["train.max_steps=4"], tmp_path / "full")
    _run(["train.max_steps=2"], tmp_path / "split")
    mid = torch.load(tmp_path / "split" / "checkpoints" / "ckpt-00000002.pt", weights_only=True)
    # rank 0 is 2 batches into epoch 0; rank 1's epoch 0 ended at its failure, it is 1 batch into epoch 1
    assert mid["data"]["ranks"] == [{"epoch": 0, "index": 2}, {"epoch": 1, "index": 1}]
    _run(["train.max_steps=4"], tmp_path / "split")  # resumes from step 2
    a = torch.load(tmp_path / "full" / "checkpoints" / "ckpt-00000004.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoints" / "ckpt-00000004.pt", weights_only=True)
    assert a["data"]["ranks"] == b["data"]["ranks"]
    for key in ("model", "ema"):
        diff = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not diff, f"{key}: {len(diff)} tensors differ"
