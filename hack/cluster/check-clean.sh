#!/usr/bin/env bash
# check-clean.sh verifies that down.sh left nothing of the local cluster behind: no process, mount, route,
# iptables rule or chain, bridge, veth, cgroup, listening port, changed kernel setting or hard-coded directory.
# It prints each leftover and exits 1 if there is any, 0 otherwise. Read-only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

leftovers=()
found() { leftovers+=("$1: $2"); }

# Processes: whatever is in our cgroups or kubepods, plus any process whose command line names the run directory
# (the components' flags and the shims' -address all do; a `tail -f` of a log does not); the same binaries run
# by other test setups on the machine are not ours.
check_processes() {
  local pid cmd
  for pid in $(tracked_pids); do
    found process "$pid $(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline")"
  done
  for pid in $(pgrep -f -- "$RUN/" || true); do
    cmd=$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline") || continue
    found process "$pid $cmd"
  done
}

check_mounts() {
  local m
  while read -r m; do [[ -z $m ]] || found mount "$m"; done < <(our_mounts)
}

check_network() {
  local line
  ip link show "$BRIDGE" >/dev/null 2>&1 && found bridge "$BRIDGE"
  # The CNI bridge plugin names the host end of a pod's pair veth<8 hex digits>.
  while read -r line; do [[ -z $line ]] || found veth "$line"; done < \
    <(ip -o link show type veth 2>/dev/null | awk -F': ' '{split($2, a, "@"); print a[1]}' | grep -E '^veth[0-9a-f]{8}$' || true)
  while read -r line; do [[ -z $line ]] || found route "$line"; done < \
    <(ip -4 route show | grep -E "^($SERVICE_CIDR|$POD_CIDR) | dev $BRIDGE( |\$)" || true)
}

check_iptables() {
  local cmd table line
  for cmd in $(iptables_families); do
    for table in filter nat mangle raw; do
      while read -r line; do [[ -z $line ]] || found "$cmd -t $table" "$line"; done < \
        <("$cmd" -t "$table" -S 2>/dev/null | grep -E -- "$OUR_CHAINS_RE" || true)
    done
  done
}

check_cgroups() {
  local dir
  while read -r dir; do [[ -z $dir ]] || found cgroup "$dir"; done < \
    <(find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d \( -name 'kubepods*' -o -name "$TRACK_CGROUP_NAME" \))
}

check_ports() {
  local port
  for port in "${PORTS[@]}"; do
    if [[ -n $(ss -Htln "sport = :$port") ]]; then found port "$port is listening"; fi
  done
}

check_files() {
  local path
  for path in "$RUN" "$ADMIN_KUBECONFIG" "${HARDCODED_DIRS[@]}"; do
    # Another containerd on the machine keeps its shim sockets there.
    [[ $path == /run/containerd ]] && other_containerd_running && continue
    [[ -e $path ]] && found file "$path"
  done
  return 0
}

# check_sysctls compares the kernel settings with what up.sh recorded before it started.
check_sysctls() {
  local key value now
  [[ -f $SYSCTLS_BEFORE ]] || return 0
  while read -r key value; do
    now=$(cat "/proc/sys/$key" 2>/dev/null) || continue
    [[ $now == "$value" ]] || found sysctl "$key is $now, was $value before up.sh"
  done < "$SYSCTLS_BEFORE"
}

main() {
  check_processes
  check_mounts
  check_network
  check_iptables
  check_cgroups
  check_ports
  check_files
  check_sysctls
  if [[ ${#leftovers[@]} -gt 0 ]]; then
    printf 'left behind: %s\n' "${leftovers[@]}" >&2
    exit 1
  fi
  echo "clean: no process, mount, bridge, veth, route, iptables rule, cgroup, port, file or sysctl of the cluster left"
}

main "$@"
