"""Exact resume of a latent run: the tiny-latent config on real latent shards (the demo's pixel shards
encoded with the tiny codec, read by the latent loader) trained 20 steps straight gives the same weights,
EMA, optimizer state and model.pt bytes as 10 steps, a stop, and a resume to 20. The resume falls in the
middle of an epoch (3 batches each) and dropout is on, so the data position and the RNG must both come back.
"""

from __future__ import annotations

import json

import pytest
import torch
from support.latentkit import encoded_root, tiny_codec_files

pytest.importorskip("diffusers")

from avbench.train.config import load_config
from avbench.train.logging import read_log
from avbench.train.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(root, run, steps: int):
    sets = [f"data.shards={json.dumps(str(root))}", f"train.max_steps={steps}", "data.batch_size=2",
            "data.epoch_batches=3", "checkpoint.every=10", "checkpoint.keep_last=5", "log.every=1",
            "log.preview_every=0", "log.tensorboard=false", "model.overrides.dropout=0.1"]
    return train(load_config("tiny-latent", sets), run, console=False)


def test_latent_run_resumes_bit_exactly(demo_dataset, tmp_path):
    paths = tiny_codec_files(tmp_path / "codec", "tiny")
    root = encoded_root(demo_dataset, tmp_path / "root", paths, splits=("train",))
    straight = _train(root, tmp_path / "straight", 20)
    run = tmp_path / "resumed"
    assert _train(root, run, 10).step == 10
    resumed = _train(root, run, 20)
    assert resumed.step == straight.step == 20
    assert [r["resumed_from"] is not None for r in read_log(run, "start")] == [False, True]

    a = torch.load(straight.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["kind"] == b["kind"] == "latent" and a["data"] == b["data"]
    for key in ("model", "ema"):
        diff = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not diff, f"{key}: {len(diff)} tensors differ, e.g. {diff[:3]}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert (tmp_path / "straight" / "model.pt").read_bytes() == (run / "model.pt").read_bytes()
    # the losses of steps 11..20 match too: the resumed run saw the same batches and noise
    loss = {r["step"]: r["loss"] for r in read_log(tmp_path / "straight")}
    assert [r["loss"] for r in read_log(run) if r["step"] > 10] == [loss[s] for s in range(11, 21)]
