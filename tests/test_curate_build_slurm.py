"""scripts/slurm/build.sbatch, run end to end with a local stand-in for `sbatch`.

The stand-in runs each submitted job at once, in submission order, with the variables SLURM sets
(SLURM_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_CPUS_PER_TASK) and records its arguments, so the test checks
what the script submits (array range and throttle, afterok dependency) and that the jobs it describes
really build the dataset: partitions first, then the merge that shards.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from avbench.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "slurm" / "build.sbatch"

FAKE_SBATCH = r"""#!/bin/bash
# Local stand-in for sbatch: log the call, run the job(s) now, print a job id like --parsable does.
echo "$*" >> "$SBATCH_LOG"
array=""; args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --array=*) array="${1#--array=}"; shift ;;
    --export=*) IFS=, read -ra kv <<< "${1#--export=}"
                for x in "${kv[@]}"; do [[ "$x" == *=* ]] && export "$x"; done; shift ;;
    --*) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
id=$((1000 + $(wc -l < "$SBATCH_LOG")))
if [[ -n "$array" ]]; then
  range=${array%%\%*}
  for ((t=${range%-*}; t<=${range#*-}; t++)); do
    SLURM_JOB_ID=$id SLURM_ARRAY_TASK_ID=$t SLURM_CPUS_PER_TASK=1 bash "${args[@]}" >> "$SBATCH_LOG.out" 2>&1 || exit 1
  done
else
  SLURM_JOB_ID=$id SLURM_CPUS_PER_TASK=1 bash "${args[@]}" >> "$SBATCH_LOG.out" 2>&1 || exit 1
fi
echo "$id"
"""


def test_sbatch_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    assert "--dependency=afterok:" in text and "--partition" in text and "#SBATCH --cpus-per-task" in text


def test_array_then_merge_builds_the_dataset(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "sbatch"
    fake.write_text(FAKE_SBATCH)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    avbench = bindir / "avbench"  # the avbench of this interpreter, whatever PATH holds
    avbench.write_text(f'#!/bin/bash\nexec "{sys.executable}" -m avbench "$@"\n')
    avbench.chmod(avbench.stat().st_mode | stat.S_IEXEC)
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "slurm"\ndescription = "d"\ntarget_hours = 0.01\n'
                    '[[sources]]\nkind = "synthetic"\ncount = 3\nseed = 5\nmin_duration_s = 6.0\nmax_duration_s = 7.0\n'
                    '[clip]\nskip_start_s = 0.5\n[output]\nsizes = [32]\n'
                    '[split]\ntrain = 1.0\nval = 0.0\ntest = 0.0\n')
    root = tmp_path / "root"
    log = tmp_path / "sbatch.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bindir}:{env['PATH']}", SBATCH_LOG=str(log), AVBENCH_SBATCH_OPTS="--mem=1G  --time=10")
    res = subprocess.run(["bash", str(SCRIPT), str(spec), str(root), "2", "1"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr + (log.with_suffix(".log.out").read_text() if log.with_suffix(".log.out").exists() else "")
    calls = log.read_text().splitlines()
    assert calls[0].startswith("--parsable --array=0-1%1 ")
    assert calls[1].startswith("--parsable --dependency=afterok:1001 ") and "AVBENCH_MERGE=1" in calls[1]
    assert all(" --mem=1G --time=10 " in c for c in calls[:2]), calls  # the override reaches both jobs
    assert "submitted array job 1001" in res.stdout
    index = json.loads((root / "shards" / "index.json").read_text())
    assert sum(r["samples"] for r in index["shards"]) >= 1
    assert (root / "lock.csv").exists()
    out = (tmp_path / "sbatch.log.out").read_text()
    assert out.count("0 source(s) failed") == 3  # two partitions + the merge
