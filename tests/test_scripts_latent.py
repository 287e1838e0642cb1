"""Smoke runs of the latent baseline's number scripts, as a user runs them (subprocesses, real files):
scripts/latent_recon.py (tiny random codecs on the demo test split → PSNR/FVD/FAD table; without weights →
exit 2 with one line per missing part) and scripts/bench_latent.py --tiny (encode and training tables).
Their work is cut with their own flags (2 clips, 1 step); the numbers are only checked to be finite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _env(tmp_path: Path) -> dict[str, str]:
    """No weights anywhere but what the test names: a fresh avbench cache and HF cache, hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AVBENCH_", "HF_", "HUGGINGFACE"))}
    env.update(AVBENCH_CACHE=str(tmp_path / "avbench-cache"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _run(args: list[str], tmp_path: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(tmp_path),
                          timeout=timeout, cwd=tmp_path, check=False)


def _listing(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")}


def test_latent_recon_tiny_prints_a_finite_table_and_leaves_root_alone(demo_dataset, i3d_ckpt, tmp_path):
    before = _listing(demo_dataset)
    out = tmp_path / "recon.json"
    # one codec of the two --tiny runs by default: the second would double the I3D/VGGish work
    res = _run([str(SCRIPTS / "latent_recon.py"), str(demo_dataset), "--size", "64", "--tiny", "--codecs", "tiny",
                "--max-clips", "2", "--batch-size", "2", "--device", "cpu", "--i3d-weights", str(i3d_ckpt),
                "--out", str(out)], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    header = lines[0].split()
    assert header[:7] == ["codec", "clips", "PSNR", "dB", "min", "FVD", "FAD"] and "tiny random codecs" in lines[0]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["tiny"] and all(len(r) == 6 for r in rows), lines
    for r in rows:
        assert r[1] == "2"
        values = [float(v) for v in r[2:]]  # PSNR mean, PSNR min, FVD, FAD
        assert all(math.isfinite(v) for v in values), r
        assert values[0] >= values[1] and values[2] >= 0 and values[3] >= 0
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert doc["tiny"] and row["codec"] == "tiny" and row["clips"] == 2
    assert [f"{row[k]:.2f}" for k in ("psnr_mean", "psnr_min")] == rows[0][2:4]  # the table prints the record
    assert math.isfinite(row["fvd"]) and math.isfinite(row["fad"])
    assert row["codec_describe"]["audio_latent"]["latents_per_frame"] == "25/8"
    assert _listing(demo_dataset) == before  # reconstructions go to a temporary folder, not into ROOT
    assert "Loading weights" not in res.stderr and "Writing model shards" not in res.stderr


def test_latent_recon_without_weights_exits_2_naming_each_missing_part(demo_dataset, tmp_path):
    res = _run([str(SCRIPTS / "latent_recon.py"), str(demo_dataset), "--size", "64", "--device", "cpu",
                "--i3d-weights", str(tmp_path / "absent-i3d.ckpt")], tmp_path, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr[-3000:]
    assert res.stdout.strip() == ""  # nothing measured, no table
    lines = res.stderr.splitlines()
    assert lines[0] == "missing weights, nothing measured:"
    expected = [  # (start of the line, its licence, its local-path flag)
        ("sd-mmaudio16k: video VAE stabilityai/sd-vae-ft-mse", "MIT", "--video-vae"),
        ("sd-mmaudio16k: audio VAE (MMAudio 16 kHz): v1-16.pth", "CC-BY-NC-4.0", "--audio-vae"),
        ("sd-mmaudio16k: vocoder (MMAudio BigVGAN-v1 16 kHz): best_netG.pt", "CC-BY-NC-4.0", "--vocoder"),
        ("sd-audioldm2: video VAE stabilityai/sd-vae-ft-mse", "MIT", "--video-vae"),
        ("sd-audioldm2: audio VAE (AudioLDM 2) cvssp/audioldm2/vae", "CC-BY-NC-SA-4.0", "--audio-vae"),
        ("sd-audioldm2: vocoder (AudioLDM 2 HiFi-GAN) cvssp/audioldm2/vocoder", "CC-BY-NC-SA-4.0", "--vocoder"),
        ("i3d-kinetics-400.ckpt not found", "", "--i3d-weights"),
        ("vggish-10086976.pth not found", "", "--vggish-weights"),
    ]
    body = [line.strip() for line in lines[1:]]
    assert len(body) == len(expected), body
    for line, (start, licence, flag) in zip(body, expected):
        assert line.startswith(start) and licence in line and flag in line, line


def _table(text: str, first: str) -> list[list[str]]:
    """The data rows of the markdown table whose header starts with `| first |`."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_bench_latent_tiny_prints_encode_and_train_tables(tmp_path):
    res = _run([str(SCRIPTS / "bench_latent.py"), "--tiny", "--device", "cpu", "--encode-batch", "1",
                "--encode-batches", "1", "--batch-size", "1,2", "--steps", "1", "--warmup", "0"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (enc,) = _table(res.stdout, "encode")
    assert enc[1:4] == ["tiny", "64", "1"] and enc[5].startswith("cpu")
    assert math.isfinite(float(enc[4])) and float(enc[4]) > 0
    train = _table(res.stdout, "train")
    assert [r[1] for r in train] == ["tiny-latent"] * 2 and [r[2] for r in train] == ["1", "2"]
    for r in train:
        rate, tflop, params = float(r[3]), float(r[4]), int(r[6].replace(",", ""))
        assert math.isfinite(rate) and rate > 0 and math.isfinite(tflop) and tflop > 0
        assert r[5] == "-" and r[7] == "fp32" and params > 0  # no peak memory on CPU
    assert train[0][4] == train[1][4] and train[0][6] == train[1][6]  # per-sample FLOPs, same model
