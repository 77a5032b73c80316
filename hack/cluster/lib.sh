# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this file
# lib.sh: the settings and small helpers up.sh, down.sh, check-clean.sh and images.sh share. Sourced, not run.
#
# One cluster per machine: the ports, the bridge, the cgroups and the paths kubelet hard-codes are machine-wide.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CLUSTER_DIR/../.." && pwd)

STATE=${VAULTCERT_CLUSTER_DIR:-/var/tmp/vaultcert-cluster}
RUN=$STATE/run            # everything the cluster needs while up; down.sh removes it
LOGS=$STATE/logs          # component logs and what the machine looked like before up; down.sh keeps them
PKI=$RUN/pki
PIDS=$RUN/pids
KUBECONFIGS=$RUN/kubeconfigs
ADMIN_KUBECONFIG=$STATE/admin.kubeconfig   # written last by up.sh: the sign that the cluster is up
IMAGES=${VAULTCERT_CLUSTER_IMAGES:-$REPO/bin/cluster}   # static binaries and image tarballs (bin/ is ignored by git)

NODE_NAME=vaultcert-node
BRIDGE=vaultcert0                 # not cni0, so nothing else's bridge is touched
POD_CIDR=10.244.0.0/24            # the one node's pod CIDR, and the cluster CIDR
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/24
KUBERNETES_SERVICE_IP=10.96.0.1
PAUSE_IMAGE=vaultcert.local/pause:1
CONTAINERD_SOCK=$RUN/containerd/containerd.sock

# Fixed ports (the defaults of each component), all below the ephemeral range the other test runs on this machine
# pick from. up.sh refuses to start when one is taken.
ETCD_CLIENT_PORT=2379 ETCD_PEER_PORT=2380 APISERVER_PORT=6443
KCM_PORT=10257 SCHEDULER_PORT=10259 KUBELET_PORT=10250 KUBELET_HEALTHZ_PORT=10248
PROXY_METRICS_PORT=10249 PROXY_HEALTHZ_PORT=10256
PORTS=("$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT" "$KUBELET_PORT"
  "$KUBELET_HEALTHZ_PORT" "$PROXY_METRICS_PORT" "$PROXY_HEALTHZ_PORT")

# Every process up.sh starts goes into its own cgroup under this one (pids hierarchy): a process that forks away
# from its pid file (containerd's shims) is still found, and down.sh and check-clean.sh know what is ours.
# kubelet puts the pods' processes under kubepods in every hierarchy.
TRACK_CGROUP_NAME=vaultcert-cluster

# Paths kubelet, the containerd shims (their sockets in /run/containerd/s), ctr and libcni use whatever their
# configuration says; cleaned by down.sh. /run/containerd is left alone while another containerd runs.
HARDCODED_DIRS=(/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /run/containerd)

# Kernel settings kubelet (its kernel defaults), kube-proxy and the CNI bridge plugin change; up.sh records them
# and down.sh puts them back.
SYSCTLS=(net/ipv4/ip_forward net/ipv4/conf/all/route_localnet net/bridge/bridge-nf-call-iptables
  net/bridge/bridge-nf-call-ip6tables vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/netfilter/nf_conntrack_max
  net/netfilter/nf_conntrack_tcp_timeout_established net/netfilter/nf_conntrack_tcp_timeout_close_wait)
SYSCTLS_BEFORE=$LOGS/sysctl-before-up.txt

# The iptables chains kube-proxy, kubelet and up.sh create (the CNI bridge plugin adds none with ipMasq false).
OUR_CHAINS_RE='(KUBE-|VAULTCERT-)[A-Z0-9-]*'

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() { [[ $(id -u) == 0 ]] || die "run as root: the cluster needs cgroups, mounts, iptables and a bridge"; }

# pids_hierarchy is where the pids controller is mounted: its own hierarchy on cgroup v1, the unified one on v2.
pids_hierarchy() {
  if [[ -d /sys/fs/cgroup/pids ]]; then echo /sys/fs/cgroup/pids; else echo /sys/fs/cgroup; fi
}
TRACK_CGROUP=$(pids_hierarchy)/$TRACK_CGROUP_NAME

# outside_interface and host_ip come from the default route: the interface pods must never forward to, and
# the address the API server and kubelet serve on.
outside_interface() { ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i+1); exit}}'; }
host_ip() { ip -4 -o addr show dev "$(outside_interface)" | awk '{split($4, a, "/"); print a[1]; exit}'; }

# kubepods_pids lists the processes in kubelet's kubepods cgroup trees (every hierarchy): the pods'.
kubepods_pids() {
  find /sys/fs/cgroup -mindepth 2 -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# tracked_pids lists every process in our cgroups and in kubepods.
tracked_pids() {
  local f
  for f in "$TRACK_CGROUP"/*/cgroup.procs "$TRACK_CGROUP"/cgroup.procs; do
    if [[ -r $f ]]; then cat "$f"; fi
  done
  kubepods_pids
}

# our_mounts lists the mount points the cluster leaves: under the state dir (netns, rootfs, tmpfs volumes,
# kubelet's rshared bind of its root dir) and under the directories kubelet and the shims hard-code. Deepest first.
our_mounts() {
  local prefixes=("$STATE" "${HARDCODED_DIRS[@]}")
  findmnt -rn -o TARGET | while read -r target; do
    target=$(printf '%b' "$target")   # findmnt -r escapes spaces as \x20
    for p in "${prefixes[@]}"; do
      if [[ $target == "$p" || $target == "$p"/* ]]; then echo "$target"; break; fi
    done
  done | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-
}

# alive tells whether a process runs; a killed one may linger as a zombie until its parent reaps it, and that
# one does not count.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $state != Z ]]
}

# other_containerd_running tells whether any containerd is alive (down.sh runs it after stopping ours).
other_containerd_running() {
  local pid
  for pid in $(pgrep -x containerd); do
    alive "$pid" && return 0
  done
  return 1
}

# iptables_families lists the iptables front ends present (IPv4, IPv6): kube-proxy and kubelet use both.
iptables_families() {
  local cmd
  for cmd in iptables ip6tables; do
    if command -v "$cmd-save" >/dev/null; then echo "$cmd"; fi
  done
}
