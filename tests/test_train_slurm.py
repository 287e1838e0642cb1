"""scripts/slurm/train.sbatch, run end to end on the CPU with stand-ins for the SLURM commands.

`srun` runs its command directly, `scontrol` names this host and records `requeue`, `scancel` signals the
step it started; `torchrun` is the real one (c10d rendezvous on 127.0.0.1, one node, one process). The
test sends the batch script the SIGUSR1 that `--signal=B:USR1@300` would, checks that the trainer wrote a
preemption checkpoint and the job was requeued, then runs the script again as the requeued job and checks
that it resumes and finishes.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

from avbench.paths import REPO_ROOT
from avbench.train.logging import read_log

SCRIPT = REPO_ROOT / "scripts" / "slurm" / "train.sbatch"

FAKES = {
    "srun": r"""#!/bin/bash
# run the step's command in place (drop srun's own options); remember its pid for scancel
while [[ "$1" == --* ]]; do shift; done
echo $$ > "$FAKE_DIR/step.pid"
exec "$@"
""",
    "scontrol": r"""#!/bin/bash
echo "scontrol $*" >> "$FAKE_DIR/calls.log"
if [[ "$1 $2" == "show hostnames" ]]; then echo 127.0.0.1; fi
""",
    "scancel": r"""#!/bin/bash
echo "scancel $*" >> "$FAKE_DIR/calls.log"
sig=TERM
for a in "$@"; do [[ "$a" == --signal=* ]] && sig="${a#--signal=}"; done
kill -s "$sig" "$(cat "$FAKE_DIR/step.pid")"
""",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sbatch_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "#SBATCH --signal=B:USR1@" in text and "--rdzv-backend=c10d" in text and "scontrol requeue" in text


def test_preempted_job_checkpoints_requeues_and_resumes(demo_dataset, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in FAKES.items():
        (bindir / name).write_text(text)
    (bindir / "torchrun").write_text(f'#!/bin/bash\nexec "{sys.executable}" -m torch.distributed.run "$@"\n')
    for p in bindir.iterdir():
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    run = tmp_path / "run"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
           "DATA": str(demo_dataset), "RUN": str(run), "CONFIG": "tiny", "SLURM_JOB_ID": "4242",
           "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "node001", "SLURM_GPUS_ON_NODE": "1",
           "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    extra = ["--max-steps", "8", "--set", "data.frames=4", "--set", "log.every=1", "--set", "log.preview_every=0",
             "--set", "log.tensorboard=false", "--set", "data.workers=0", "--set", "data.epoch_batches=3"]

    job = subprocess.Popen(["bash", str(SCRIPT), *extra], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not any(r["step"] >= 2 for r in _rows(run)):
        assert job.poll() is None, job.stdout.read()
        assert time.monotonic() < deadline, "training did not reach step 2"
        time.sleep(0.1)
    job.send_signal(signal.SIGUSR1)
    out, _ = job.communicate(timeout=180)
    assert job.returncode == 0, out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert "scancel --signal=TERM 4242" in calls and "scontrol requeue 4242" in calls
    stopped = read_log(run, "preempted")
    assert len(stopped) == 1 and stopped[0]["step"] < 8

    again = subprocess.run(["bash", str(SCRIPT), *extra], env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    starts = read_log(run, "start")
    assert [s["resumed_from"] is not None for s in starts] == [False, True]
    assert starts[1]["resumed_from"].endswith(f"ckpt-{stopped[0]['step']:08d}.pt")
    assert (run / "checkpoints" / "ckpt-00000008.pt").exists()


def _rows(run):
    try:
        return read_log(run)
    except ValueError:  # a line being written
        return []
