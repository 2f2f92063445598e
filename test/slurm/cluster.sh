#!/usr/bin/env bash
# A single-node Slurm on localhost for the cluster tests: munged, slurmctld and slurmd (as root), all state,
# sockets, logs and pid files under DIR, on the ports given, so it touches nothing system-wide. Process groups
# track job processes (so a requeue's SIGTERM reaches childtune, not only the batch shell), a requeued job may
# start again after 10 s (cred_expire; default 120) and the scheduler looks at pending jobs every second.
#   cluster.sh start DIR CTLD_PORT SLURMD_PORT   prints SLURM_CONF=... once the node is idle
#   cluster.sh stop DIR                           cancels jobs, stops every daemon it started
set -euo pipefail
cmd=$1 dir=$2
conf=$dir/slurm.conf

stop() {
  export SLURM_CONF=$conf
  if [ -f "$dir/slurmctld.pid" ]; then
    scancel --full --quiet 2>/dev/null || true
    # Job steps outlive slurmd: let the cancelled ones end before the daemons go.
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    scontrol shutdown 2>/dev/null || true
  fi
  for f in slurmd slurmctld munged; do
    pid=$(cat "$dir/$f.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; kill "$pid" 2>/dev/null || true; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case $cmd in
stop) stop ;;
start)
  ctld_port=$3 slurmd_port=$4
  host=$(hostname)
  mkdir -p "$dir/state" "$dir/spool"
  chmod 700 "$dir"
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge.key"
  munged -f -S "$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  cat > "$conf" <<CONF
ClusterName=childtune-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=20
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$conf
  slurmctld -f "$conf"
  slurmd -f "$conf" -N "$host"
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then echo "SLURM_CONF=$conf"; exit 0; fi
    sleep 0.2
  done
  echo "the node did not become idle; slurmctld.log and slurmd.log in $dir say why" >&2
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  stop
  exit 1
  ;;
esac
