"""`--nproc N`: run N training processes on this machine through torchrun's elastic agent.

The agent sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in each worker, exactly as the
`torchrun --standalone --nproc-per-node N` command line would; the workers then run `train()` unchanged.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from avbench.train.checkpointing import list_checkpoints
from avbench.train.config import TrainConfig
from avbench.train.loop import train


def _worker(cfg_dict: dict[str, Any], run: str, resume: str, console: bool) -> dict[str, Any]:
    result = train(TrainConfig.from_dict(cfg_dict), run, resume=resume, console=console)
    if result.preempted:
        # The agent is shutting down and no longer collects return values; a normal return would block
        # on the result queue until the agent's SIGKILL. The checkpoint is on disk: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + int(result.signal or 15))
    return dict(result.__dict__)


def launch(cfg: TrainConfig, run: str | Path, *, nproc: int, resume: str = "auto", console: bool = True) -> dict:
    """Start `nproc` local workers (spawned), wait for them, return rank 0's `TrainResult` as a dict."""
    # as torchrun does: N processes must not each start one thread per core
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn",
        monitor_interval=0.5,
    )
    try:
        results = elastic_launch(config, _worker)(cfg.to_dict(), str(run), resume, console)
    except SignalException as e:
        # The agent got SIGTERM (e.g. from srun) and passed it on; the workers wrote a preemption checkpoint
        # before exiting, but their return values are lost with the agent: report the newest checkpoint.
        ckpts = list_checkpoints(Path(run))
        return {"preempted": True, "signal": int(e.sigval), "checkpoint": str(ckpts[-1][1]) if ckpts else None,
                "step": ckpts[-1][0] if ckpts else 0, "nonfinite_skipped": 0, "overflow_skipped": 0}
    return results[0]
