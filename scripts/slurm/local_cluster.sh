#!/bin/bash
# A throw-away single-node SLURM on this machine, to try scripts/slurm/build.sbatch without a cluster.
#
#   bash scripts/slurm/local_cluster.sh start DIR    # prints: export SLURM_CONF=DIR/slurm.conf
#   bash scripts/slurm/local_cluster.sh stop DIR
#
# Installs nothing: needs munged, slurmctld and slurmd on PATH (Debian: apt-get install slurm-wlm munge)
# and python3 (to pick free ports). `start` writes a minimal slurm.conf, a munge key and all daemon
# state, logs and sockets into DIR, starts munged, slurmctld and slurmd on localhost, and returns once
# the node is idle; any SLURM command run with SLURM_CONF=DIR/slurm.conf then talks to it and nothing
# else (the system's own munge socket, ports 6817/6818 and /etc/slurm are left alone). DIR and its
# parents must be searchable by everyone: munged refuses a socket in a directory that is not. `stop`
# cancels what is still queued, stops the three daemons and leaves DIR (with the logs) in place.
# Choices fitted to containers: proctrack/linuxproc and task/none need no cgroups, no accounting.
# Root is not needed: the daemons run as the user who starts them (SlurmUser), and then only that
# user's jobs can run, which is all a build needs (tried as root and as nobody, slurm 22.05).
#
# Environment: LOCAL_SLURM_CPUS (default: all cores), LOCAL_SLURM_MEM_MB (default: 90% of MemTotal),
# LOCAL_SLURM_WAIT_S (default 60: how long start waits for each daemon).

set -euo pipefail

usage() { echo "usage: local_cluster.sh start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
ACTION=$1
DIR=$(readlink -f "$2")
WAIT_S=${LOCAL_SLURM_WAIT_S:-60}
export SLURM_CONF=$DIR/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin  # Debian puts the daemons there, outside a normal user's PATH

last_line() { # the last non-empty line of a daemon's log, to say why it did not come up
    local f
    for f in "$@"; do
        [[ -s "$f" ]] && { grep -v '^[[:space:]]*$' "$f" | tail -n 1; return; }
    done
    echo "(no log written)"
}

stop_pids() { # TERM all at once (each takes 1-2 s to exit), KILL what is left after 10 s; only our pids
    local file pid pids=()
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        pid=$(cat "$file")
        kill "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$file"
    done
    for _ in $(seq 100); do
        local alive=0
        for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

stop() {
    if [[ -f "$DIR/slurmctld.run.pid" ]] && command -v scancel >/dev/null; then
        timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
    fi
    stop_pids "$DIR/slurmd.run.pid" "$DIR/slurmctld.run.pid" "$DIR/munged.run.pid"
}

fail() { # one line naming the daemon and its last log line, then clean up what started
    echo "local_cluster.sh: $1" >&2
    stop
    exit 1
}

wait_for() { # wait_for WHAT PIDFILE LOG... -- CMD...: poll CMD until it succeeds or the daemon dies
    local what=$1 pidfile=$2; shift 2
    local logs=()
    while [[ $1 != -- ]]; do logs+=("$1"); shift; done
    shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        kill -0 "$(cat "$pidfile")" 2>/dev/null || fail "$what exited: $(last_line "${logs[@]}")"
        if ((SECONDS >= deadline)); then
            # a node that registered but is not idle says why in its reason (e.g. Low RealMemory)
            local node=""
            [[ $what == slurmd ]] && node=" (node: $(sinfo --noheader --Node --format='%t %E' 2>/dev/null))"
            fail "$what not ready after ${WAIT_S}s$node: $(last_line "${logs[@]}")"
        fi
        sleep 0.2
    done
}

node_idle() { [[ "$(sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null)" == idle ]]; }

start() {
    local missing=() cmd
    for cmd in munged slurmctld slurmd sinfo sbatch python3; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] || { echo "local_cluster.sh: not on PATH: ${missing[*]}" >&2; exit 1; }
    [[ -f "$DIR/slurmctld.run.pid" ]] && kill -0 "$(cat "$DIR/slurmctld.run.pid")" 2>/dev/null \
        && { echo "local_cluster.sh: a cluster is already running in $DIR" >&2; exit 1; }
    mkdir -p "$DIR/state" "$DIR/spool"
    chmod 755 "$DIR"

    NODE=$(hostname -s)
    local cpus=${LOCAL_SLURM_CPUS:-$(nproc)}
    # RealMemory above what slurmd measures drains the node ("Low RealMemory"): stay under it.
    local mem=${LOCAL_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)}
    local user ports
    user=$(id -un)
    ports=$(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
    read -r ctld_port slurmd_port <<< "$ports"

    cat > "$SLURM_CONF" <<EOF
# Written by scripts/slurm/local_cluster.sh: one node, localhost only.
ClusterName=avbench-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

    [[ -f "$DIR/munge.key" ]] || { (umask 077; head -c 1024 /dev/urandom > "$DIR/munge.key"); }
    # Daemons run in the foreground (-F/-D) under setsid so that $! is their pid and they outlive this
    # script; stdout/stderr go to files so that a caller capturing our output is not kept waiting.
    setsid munged --foreground --socket="$DIR/munge.socket" --key-file="$DIR/munge.key" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed" \
        </dev/null >"$DIR/munged.out" 2>&1 &
    echo $! > "$DIR/munged.run.pid"
    wait_for munged "$DIR/munged.run.pid" "$DIR/munged.out" "$DIR/munged.log" -- test -S "$DIR/munge.socket"

    setsid slurmctld -D -i </dev/null >"$DIR/slurmctld.out" 2>&1 &
    echo $! > "$DIR/slurmctld.run.pid"
    wait_for slurmctld "$DIR/slurmctld.run.pid" "$DIR/slurmctld.log" "$DIR/slurmctld.out" -- scontrol ping

    setsid slurmd -D -N "$NODE" </dev/null >"$DIR/slurmd.out" 2>&1 &
    echo $! > "$DIR/slurmd.run.pid"
    wait_for slurmd "$DIR/slurmd.run.pid" "$DIR/slurmd.log" "$DIR/slurmd.out" -- node_idle
    echo "export SLURM_CONF=$SLURM_CONF"
}

case $ACTION in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
