#!/usr/bin/env bash
# down.sh stops the local cluster started by up.sh and removes every trace of it: its processes (containers and
# containerd shims included), mounts, the bridge and its veths, the service route, the iptables rules and chains
# (kube-proxy's and kubelet's KUBE-* too), the cgroups, the kernel settings they changed, and the directories
# kubelet and the shims hard-code. It also works after a half-failed up.sh, and when nothing is up.
# Component logs stay in $STATE/logs. hack/cluster/check-clean.sh verifies the result.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# component_pids lists the processes of one component: those in its cgroup (containerd's holds its shims).
component_pids() { cat "$TRACK_CGROUP/$1/cgroup.procs" 2>/dev/null || true; }

# stop_component sends SIGTERM, waits up to the grace period, then SIGKILLs what is left.
stop_component() { # name grace-seconds
  local name=$1 deadline=$((SECONDS + $2)) pids
  pids=$(component_pids "$name")
  [[ -n $pids ]] || return 0
  log "stopping $name"
  # shellcheck disable=SC2086 # one pid per word
  kill -TERM $pids 2>/dev/null || true
  while [[ -n $(component_pids "$name") ]] && ((SECONDS < deadline)); do sleep 0.1; done
  kill_all "$name" "$(component_pids "$name")"
}

# kill_all SIGKILLs the given processes and waits until they are gone.
kill_all() { # what pids
  local what=$1 pids=$2
  [[ -n $pids ]] || return 0
  log "killing $what: ${pids//$'\n'/ }"
  for _ in {1..50}; do
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
    pids=$(for p in $pids; do if alive "$p"; then echo "$p"; fi; done)
    [[ -n $pids ]] || return 0
  done
  log "warning: still alive after SIGKILL: ${pids//$'\n'/ }"
}

containerd_alive() { [[ -S $CONTAINERD_SOCK ]] && ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

# delete_tasks stops every container through containerd, so each shim unmounts its rootfs and exits.
delete_tasks() {
  local id
  containerd_alive || return 0
  for id in $(ctr -n k8s.io --address "$CONTAINERD_SOCK" tasks ls -q 2>/dev/null); do
    ctr -n k8s.io --address "$CONTAINERD_SOCK" tasks delete --force "$id" >/dev/null 2>&1 || true
  done
}

# kill_pod_processes kills what the steps before left in kubelet's kubepods cgroups.
kill_pod_processes() {
  kill_all "pod processes" "$(kubepods_pids)"
}

stop_processes() {
  local dir
  # Controllers first, so nothing recreates pods; then kubelet, so nothing restarts containers.
  stop_component kube-controller-manager 5
  stop_component kube-scheduler 5
  stop_component kubelet 10
  delete_tasks
  stop_component containerd 10
  kill_pod_processes
  stop_component kube-proxy 5
  stop_component kube-apiserver 10
  stop_component etcd 10
  # Anything else in our cgroups (a component this version does not know by name).
  for dir in "$TRACK_CGROUP"/*/; do
    [[ -d $dir ]] && stop_component "$(basename "$dir")" 2
  done
  return 0
}

# unmount_all unmounts the netns, rootfs, shm and volume mounts, deepest first; lazily when busy.
unmount_all() {
  local m
  for _ in 1 2 3; do
    [[ -n $(our_mounts) ]] || return 0
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(our_mounts)
  done
  [[ -z $(our_mounts) ]] || log "warning: still mounted: $(our_mounts | tr '\n' ' ')"
}

remove_network() {
  local veth
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  # Veths die with their pod's network namespace; any left attached to the bridge go explicitly.
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{split($2, a, "@"); print a[1]}'); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# clean_iptables deletes the rules that jump to our chains (KUBE-*, VAULTCERT-*), then flushes and deletes the
# chains, table by table, for IPv4 and IPv6, in one iptables-restore transaction per table.
clean_iptables() {
  local cmd table rules chains script
  for cmd in $(iptables_families); do
    for table in filter nat mangle raw; do
      rules=$("$cmd" -t "$table" -S 2>/dev/null) || continue
      chains=$(grep -oE "^-N $OUR_CHAINS_RE\$" <<< "$rules" | cut -d' ' -f2 || true)
      script=$(grep -E -- "^-A [^ ]+ .*-[jg] $OUR_CHAINS_RE( |\$)" <<< "$rules" |
        grep -vE -- "^-A $OUR_CHAINS_RE " | sed 's/^-A /-D /' || true)
      [[ -n $chains || -n $script ]] || continue
      log "removing $cmd $table rules and chains: ${chains//$'\n'/ }"
      {
        echo "*$table"
        [[ -z $script ]] || echo "$script"
        for c in $chains; do echo "-F $c"; done
        for c in $chains; do echo "-X $c"; done
        echo COMMIT
      } | "$cmd-restore" --noflush
    done
  done
}

# remove_cgroups removes kubelet's kubepods trees and ours, in every hierarchy, leaves first.
remove_cgroups() {
  local left
  for _ in {1..20}; do
    find /sys/fs/cgroup -mindepth 2 -depth -type d \
      \( -path '*/kubepods*' -o -path "*/$TRACK_CGROUP_NAME" -o -path "*/$TRACK_CGROUP_NAME/*" \) \
      -exec rmdir {} \; 2>/dev/null || true
    left=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d \( -name 'kubepods*' -o -name "$TRACK_CGROUP_NAME" \))
    [[ -n $left ]] || return 0
    sleep 0.1
  done
  log "warning: cgroups left: $left"
}

restore_sysctls() {
  local key value
  [[ -f $SYSCTLS_BEFORE ]] || return 0
  while read -r key value; do
    if [[ -w /proc/sys/$key && $(< "/proc/sys/$key") != "$value" ]]; then
      echo "$value" > "/proc/sys/$key"
    fi
  done < "$SYSCTLS_BEFORE"
}

# remove_files deletes the state (except logs) and the hard-coded directories, but never while something is
# still mounted below them: rm -rf would follow a bind mount into the host's own files.
remove_files() {
  [[ -z $(our_mounts) ]] || die "not removing files while mounts remain (see above); rerun down.sh"
  rm -rf "$RUN" "$ADMIN_KUBECONFIG"
  local dir
  for dir in "${HARDCODED_DIRS[@]}"; do
    # /run/containerd (shim sockets, fifos) is every containerd's: clear it only when none is left running.
    [[ $dir == /run/containerd ]] && other_containerd_running && continue
    rm -rf "$dir"
  done
}

main() {
  require_root
  stop_processes
  unmount_all
  remove_network
  clean_iptables
  remove_cgroups
  restore_sysctls
  remove_files
  if [[ -d $LOGS ]]; then log "cluster down (logs kept in $LOGS)"; else log "cluster down"; fi
}

main "$@"
