#!/usr/bin/env bash
# A real single-node SLURM on loopback for the cluster-profile test (shared/research/slurm_local.md).
#   harness.sh up   STATE_DIR   install (if missing), configure and start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   harness.sh down STATE_DIR   stop exactly the daemons recorded in STATE_DIR/*.pid (by PID, reverse order) and
#                               remove the /etc/slurm configs it wrote (restoring any it replaced): with a slurm.conf
#                               naming the stopped controller, every later `snakemake` start (any profile) waits ~10 s,
#                               because the SLURM executor plugin runs `scontrol show config` when it is imported
# Needs root and apt (Debian 12). Everything listens on 127.0.0.1; MariaDB on its socket only.
# One fake GPU (gres gpu:fake:1, File=/dev/null) lets GPU-requesting jobs schedule.
set -euo pipefail
cmd=${1:?usage: harness.sh up|down STATE_DIR}
STATE=$(realpath -m "${2:?state dir}")
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stop order; start order is the reverse

log() { echo "[slurm-harness] $*" >&2; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then log "timeout waiting for $what"; return 1; fi
    sleep 0.2
  done
}

stop_one() {  # stop the daemon whose PID we recorded, only if that PID still runs that program
  local name=$1 pidfile="$STATE/$1.pid" pid comm
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  comm=$(ps -o comm= -p "$pid" 2>/dev/null || true)
  if [[ -n $comm && $comm == "${name:0:15}"* ]]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name ($pid) ignored SIGTERM; SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
    log "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

CONFIGS=(slurm.conf gres.conf slurmdbd.conf)
MARK="# written by diffrepro tests/slurm/harness.sh"

save_configs() {  # keep a site's own configs aside (restored by `down`); ours carry $MARK on their first line
  mkdir -p "$STATE/etc-backup"
  for f in "${CONFIGS[@]}"; do
    if [[ -f /etc/slurm/$f ]] && [[ $(head -n1 "/etc/slurm/$f") != "$MARK" ]]; then
      cp -p "/etc/slurm/$f" "$STATE/etc-backup/$f"
    fi
  done
}

remove_configs() {
  for f in "${CONFIGS[@]}"; do
    if [[ -f /etc/slurm/$f ]] && [[ $(head -n1 "/etc/slurm/$f") == "$MARK" ]]; then rm -f "/etc/slurm/$f"; fi
    if [[ -f $STATE/etc-backup/$f ]]; then cp -p "$STATE/etc-backup/$f" "/etc/slurm/$f"; rm -f "$STATE/etc-backup/$f"; fi
  done
}

down() { for d in "${DAEMONS[@]}"; do stop_one "$d"; done; remove_configs; }

install_packages() {
  local pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
  if dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then return 0; fi
  log "installing ${pkgs[*]}"
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # keep apt from auto-starting the daemons we start ourselves
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return 0
}

write_configs() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
  mkdir -p "$STATE"/{ctld,spool,log} /etc/slurm
  save_configs
  cat > /etc/slurm/slurm.conf <<CONF
$MARK
ClusterName=localcluster
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
GresTypes=gpu
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  printf '%s\n%s\n' "$MARK" "NodeName=localhost Name=gpu Type=fake File=/dev/null" > /etc/slurm/gres.conf
  cat > /etc/slurm/slurmdbd.conf <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.daemon.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start() {  # start NAME COMMAND...: own session, stdin /dev/null, output to a file; $! is the daemon (setsid execs)
  local name=$1; shift
  setsid "$@" >"$STATE/log/$name.out" 2>&1 </dev/null &
  echo $! > "$STATE/$name.pid"
}

up() {
  mkdir -p "$STATE/log"
  down  # a previous run's daemons (recorded PIDs only)
  install_packages
  write_configs
  [[ -f /etc/munge/munge.key ]] || mungekey --create
  install -d -o munge -g munge -m 0755 /run/munge
  start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  wait_for 20 munged bash -c 'munge -n | unmunge'
  install -d -o mysql -g root -m 0755 /run/mysqld
  start mariadbd /usr/sbin/mariadbd --user=mysql --skip-networking --innodb-buffer-pool-size=128M \
    --innodb-lock-wait-timeout=900
  wait_for 60 mariadb mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  start slurmdbd /usr/sbin/slurmdbd -D
  wait_for 30 slurmdbd bash -c 'sacctmgr -n show cluster >/dev/null'
  start slurmctld /usr/sbin/slurmctld -D -i
  wait_for 30 slurmctld bash -c 'scontrol ping | grep -q "is UP"'
  start slurmd /usr/sbin/slurmd -D -N localhost
  wait_for 30 "node idle" bash -c '[[ $(sinfo -h -o %t) == idle ]]'
  log "up: $(sinfo -h | tr -s ' ')"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: harness.sh up|down STATE_DIR" >&2; exit 2 ;;
esac
