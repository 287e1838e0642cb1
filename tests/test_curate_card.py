"""The dataset card (ROOT/README.md) that `avbench build` writes: same bytes for two builds of the same
spec into different roots, names the spec and lock hashes, and states the root's own numbers."""

from __future__ import annotations

import hashlib
import json
import shutil

from avbench.curate.build import BuildConfig, build_dataset
from avbench.curate.card import card_text
from avbench.curate.spec import load_spec


def test_card_is_byte_identical_across_builds_and_names_the_spec_hash(demo_dataset, demo_spec, tmp_path):
    spec_copy = tmp_path / "elsewhere" / demo_spec.name  # another spec folder and another root
    spec_copy.parent.mkdir()
    shutil.copyfile(demo_spec, spec_copy)
    other = tmp_path / "second root"
    summary = build_dataset(BuildConfig(spec=str(spec_copy), root=other, workers=2, progress=False))
    assert summary.failed == 0, summary.lines()

    first, second = (demo_dataset / "README.md").read_bytes(), (other / "README.md").read_bytes()
    assert first == second
    text = first.decode("utf-8")
    spec = load_spec(demo_spec)
    assert f"`{spec.spec_hash}`" in text
    assert hashlib.sha256((demo_dataset / "lock.csv").read_bytes()).hexdigest() in text
    for path in (demo_dataset, other, demo_spec.parent, spec_copy.parent):
        assert str(path) not in text
    assert text.startswith(f"# {spec.name}\n\n{spec.description}\n")


def test_card_states_the_roots_records(demo_dataset, demo_spec):
    text = (demo_dataset / "README.md").read_text(encoding="utf-8")
    spec = load_spec(demo_spec)
    stats = json.loads((demo_dataset / "shards" / "stats.json").read_text())
    for rec_path in sorted((demo_dataset / "records").glob("*.json")):
        rec = json.loads(rec_path.read_text())
        assert f"| {rec['source_id']} | {rec['kind']} | {rec['title']} | {rec['license']} |" in text
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    for reason, n in stats["total"]["filtered_by_reason"].items():
        assert rows[reason].endswith(f" | {n} |"), rows[reason]
    for split, st in stats["splits"].items():
        assert f"| {split} | {st['sources']} | {st['hours_in']:.4f} |" in text
    assert f"salt `{spec.split.salt}`" in text
    assert "10 fps" in text and "exactly 1600 samples per video frame" in text
    assert f"avbench build {spec.path.name} --lock THIS_ROOT/lock.csv --root NEW_ROOT" in text
    assert "@software{avbench," in text and "doi" not in text.lower()


def test_card_counts_failures_by_stage_and_class(demo_dataset, demo_spec, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(demo_dataset, root, ignore=shutil.ignore_patterns("sources", "clips"))
    (root / "failures" / "resample").mkdir(parents=True)
    (root / "failures" / "resample" / "synth-7-9.json").write_text(
        json.dumps({"source_id": "synth-7-9", "error_class": "permanent", "error": "ValueError: bad"}))
    text = card_text(load_spec(demo_spec), root)
    assert "by stage and class: resample permanent 1" in text
    assert "by stage and class" not in (demo_dataset / "README.md").read_text(encoding="utf-8")



def test_a_partitioned_run_writes_no_card(demo_spec, tmp_path):
    """A SLURM array task shards nothing, so it has nothing to describe; the merge run writes the card."""
    summary = build_dataset(BuildConfig(spec=str(demo_spec), root=tmp_path, partition="0/3", workers=1,
                                        progress=False))
    assert summary.sources > 0 and summary.shard is None
    assert not (tmp_path / "README.md").exists()
