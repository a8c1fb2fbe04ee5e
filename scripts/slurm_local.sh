#!/usr/bin/env bash
# A one-node SLURM 22.05 on this machine, for gapbench's cluster tests (tests/test_slurm.py) and for
# trying `hydra/launcher=slurm` without a cluster. Everything listens on 127.0.0.1 only.
#
#   scripts/slurm_local.sh start    # install the Debian packages when missing, start the daemons,
#                                   # wait until `sinfo` shows the node idle
#   scripts/slurm_local.sh status   # sinfo, or why not
#   scripts/slurm_local.sh stop     # cancel its jobs, stop exactly the daemons `start` started
#
# State, config, logs: $GAPBENCH_SLURM_DIR (default /tmp/gapbench-slurm): munged with its own key
# (its socket at the default /run/munge/munge.socket.2, the only one every SLURM client finds), MariaDB (port $GAPBENCH_SLURM_DB_PORT, default 3307) for slurmdbd (accounting, which
# submitit's status polls read through sacct), slurmctld and slurmd. Clients find the cluster
# through SLURM_CONF=$GAPBENCH_SLURM_DIR/etc/slurm.conf; where /etc/slurm/slurm.conf does not
# exist, `start` links it there (and `stop` removes that link), so plain `sinfo` works too.
# Partitions: `debug` (default), `grace` (GraceTime=60) and `high`, whose jobs pre-empt (requeue)
# those of the other two. Root is needed (the daemons run as root, as on a test machine).
set -euo pipefail

STATE=${GAPBENCH_SLURM_DIR:-/tmp/gapbench-slurm}
DB_PORT=${GAPBENCH_SLURM_DB_PORT:-3307}
CONF=$STATE/etc/slurm.conf
HOST=$(hostname -s)
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # stop order

say() { echo "slurm_local: $*" >&2; }
die() { say "$*"; exit 1; }
pidfile() { echo "$STATE/run/$1.pid"; }
alive() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
export SLURM_CONF=$CONF

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "cannot install ${missing[*]}: no apt-get on this machine"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  say "installing ${missing[*]} (apt-get, about 1-2 min)"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } \
    >"$STATE/log/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed; see $STATE/log/apt.log"
}

write_config() {
  # slurmd -C: this machine's CPUs and memory; give SLURM 90% of the memory so the node never drains
  local node cpus mem
  node=$(slurmd -C | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$((mem * 9 / 10))
  cat >"$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster on 127.0.0.1
ClusterName=gapbench
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after ~10 s instead of ~2 min (BeginTime)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
PlugStackConfig=$STATE/etc/plugstack.conf
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=0
PartitionName=grace Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=60
PartitionName=high Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
  : >"$STATE/etc/plugstack.conf"
  cat >"$STATE/etc/slurmdbd.conf" <<EOF
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
AuthType=auth/munge
PidFile=$(pidfile slurmdbd)
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=gapbench
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || return 1
    sleep 0.5
  done
}

MUNGE_SOCKET=/run/munge/munge.socket.2  # SLURM's clients reach munged only at its default socket

start_munge() {
  alive munged && return 0
  if munge -n -S "$MUNGE_SOCKET" >/dev/null 2>&1; then say "using the munged already running"; return 0; fi
  mkdir -p "$(dirname "$MUNGE_SOCKET")"
  [ -s "$STATE/munge/munge.key" ] || mungekey --create --keyfile="$STATE/munge/munge.key"
  chmod 600 "$STATE/munge/munge.key"
  munged --force --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$(pidfile munged)" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed" \
    || die "munged did not start; see $STATE/log/munged.log"
  wait_for 10 munge munge -n -S "$MUNGE_SOCKET" || die "munged did not start; see $STATE/log/munged.log"
}

mysql_cli() { mariadb --no-defaults --socket="$STATE/mysql/mysqld.sock" -u root "$@"; }

start_mariadb() {
  alive mariadbd && return 0
  if [ ! -d "$STATE/mysql/data/mysql" ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql/data" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
  fi
  mariadbd --no-defaults --user=root --datadir="$STATE/mysql/data" --socket="$STATE/mysql/mysqld.sock" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --pid-file="$(pidfile mariadbd)" \
    --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
    >>"$STATE/log/mariadb.log" 2>&1 &
  wait_for 60 mariadb mysql_cli -e "SELECT 1" || die "MariaDB did not start; see $STATE/log/mariadb.log"
  mysql_cli -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'gapbench';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

node_idle() { sinfo -h -N -o %T 2>/dev/null | grep -qx "idle"; }

start() {
  mkdir -p "$STATE"/{etc,run,log,munge,mysql,ctld,d}
  chmod 700 "$STATE/munge"
  install_packages
  write_config
  if [ ! -e /etc/slurm/slurm.conf ] && [ -d /etc/slurm ]; then ln -s "$CONF" /etc/slurm/slurm.conf; fi
  start_munge
  start_mariadb
  if ! alive slurmdbd; then
    slurmdbd || die "slurmdbd did not start; see $STATE/log/slurmdbd.log"
    wait_for 30 slurmdbd sacctmgr -n list cluster || die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
    sacctmgr -i add cluster gapbench >/dev/null 2>&1 || true  # first start: register the cluster
  fi
  alive slurmctld || slurmctld || die "slurmctld did not start; see $STATE/log/slurmctld.log"
  alive slurmd || slurmd || die "slurmd did not start; see $STATE/log/slurmd.log"
  if ! wait_for 60 "idle node" node_idle; then
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true  # left drained/down by a previous run
    wait_for 30 "idle node" node_idle || die "the node is not idle after 90 s: $(sinfo -h -N -o '%T %E' 2>&1); see $STATE/log/"
  fi
  say "up: node $HOST idle; SLURM_CONF=$CONF"
}

stop() {
  if alive slurmctld; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    wait_for 60 "jobs to end" test -z "$(squeue -h -o %i 2>/dev/null)" || say "jobs still running after 60 s: $(squeue -h 2>&1)"
  fi
  local d p
  for d in "${DAEMONS[@]}"; do
    p=$(cat "$(pidfile "$d")" 2>/dev/null) || continue
    if [ -n "$p" ] && kill "$p" 2>/dev/null; then
      wait_for 30 "$d to exit" bash -c "! kill -0 $p" || { say "$d (pid $p) ignored SIGTERM; killing it"; kill -9 "$p" 2>/dev/null || true; }
    fi
    rm -f "$(pidfile "$d")"
  done
  if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$CONF" ]; then rm -f /etc/slurm/slurm.conf; fi
  say "stopped (state kept in $STATE)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status   (state in \$GAPBENCH_SLURM_DIR, default /tmp/gapbench-slurm)" >&2; exit 2 ;;
esac
