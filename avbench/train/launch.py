"""`--nproc N`: run N training processes on this machine through torchrun's elastic agent.

The agent sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in each worker, exactly as the
`torchrun --standalone --nproc-per-node N` command line would; the workers then run `train()` unchanged.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from avbench.train.config import TrainConfig


def _worker(cfg_dict: dict[str, Any], run: str, resume: str, console: bool) -> dict[str, Any]:
    from avbench.train.loop import train

    result = train(TrainConfig.from_dict(cfg_dict), run, resume=resume, console=console)
    return dict(result.__dict__)


def launch(cfg: TrainConfig, run: str | Path, *, nproc: int, resume: str = "auto", console: bool = True) -> dict:
    """Start `nproc` local workers (spawned), wait for them, return rank 0's `TrainResult` as a dict."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn",
        monitor_interval=0.5,
    )
    results = elastic_launch(config, _worker)(cfg.to_dict(), str(run), resume, console)
    return results[0]
