#!/usr/bin/env bash
# The README's demo loop as a new user meets it: a fresh venv, `pip install -e .` (no test extra), an empty
# avbench cache, and the loop's commands read out of README.md itself, so README and CI cannot drift.
# Usage: scripts/readme_loop.sh            (PYTHON=python3.11 to choose the interpreter, KEEP=1 to keep
#                                          the work folder; it is kept anyway when a command fails)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/avbench-readme-loop.XXXXXX")"
ok=0
finish() {
  if [ "$ok" = 1 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "readme loop: work folder kept at $work" >&2; fi
}
trap finish EXIT

# The code block of "From a spec to a leaderboard row": its indented lines starting with `avbench `,
# with their `\` continuation lines, written verbatim (bash itself strips the trailing comments).
"$python" - "$repo/README.md" >"$work/loop.sh" <<'PY'
import re
import shlex
import sys

HEADING = "## From a spec to a leaderboard row"
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
if HEADING not in lines:
    sys.exit(f"{sys.argv[1]}: no section {HEADING!r}; update scripts/readme_loop.sh with the README")
section = []
for line in lines[lines.index(HEADING) + 1:]:
    if line.startswith("## "):
        break
    section.append(line)
commands, i = [], 0
while i < len(section):
    if section[i].startswith("    ") and section[i].strip().startswith("avbench "):
        cmd = [section[i].strip()]
        while cmd[-1].endswith("\\") and i + 1 < len(section):
            i += 1
            cmd.append(section[i].strip())
        commands.append("\n".join(cmd))
    i += 1
if not any(c.startswith("avbench eval ") for c in commands):
    sys.exit(f"{sys.argv[1]}: the section {HEADING!r} lists no `avbench eval` command; found {len(commands)} commands")
for n, cmd in enumerate(commands, 1):
    shown = " ".join(re.sub(r"\s+#.*$", "", part).rstrip("\\").strip() for part in cmd.splitlines())
    print(f"echo {shlex.quote(f'[{n}/{len(commands)}] $ {shown}')}")
    print("t0=$SECONDS")
    print(cmd)
    print('echo "    ($((SECONDS - t0)) s)"')
PY

echo "readme loop: $(grep -c '^t0=' "$work/loop.sh") commands from README.md; work folder $work"
t_start=$SECONDS
"$python" -m venv "$work/venv"
# torch first, pinned, as the README's install instructions do (the CPU build before anything pulls CUDA).
"$work/venv/bin/python" -m pip install --quiet torch==2.13.0
"$work/venv/bin/python" -m pip install --quiet -e "$repo"
echo "    (venv and install: $((SECONDS - t_start)) s)"

mkdir -p "$work/cache" "$work/run"
export AVBENCH_CACHE="$work/cache"
unset AVBENCH_I3D_WEIGHTS AVBENCH_I3D_PT_WEIGHTS AVBENCH_VGGISH_WEIGHTS AVBENCH_CLAP_MODEL
cd "$work/run"
PATH="$work/venv/bin:$PATH" bash -euo pipefail "$work/loop.sh"
test -s metrics/leaderboard.csv || { echo "readme loop: no metrics/leaderboard.csv was written" >&2; exit 1; }
ok=1
echo "readme loop: passed in $((SECONDS - t_start)) s"
