#!/usr/bin/env bash
# up.sh starts a real single-node Kubernetes v1.36.3 cluster that runs pods, on this machine, with nothing but the
# Go module proxy and Debian packages: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a private
# containerd, kubelet and kube-proxy, as background processes with their logs and pid files under the state
# directory (VAULTCERT_CLUSTER_DIR, default /var/tmp/vaultcert-cluster). It waits until the node is Ready and a
# pod runs, writes $STATE/admin.kubeconfig and prints the `export KUBECONFIG=...` line.
#
# hack/cluster/down.sh stops it and removes every trace; hack/cluster/check-clean.sh proves that.
# Images: hack/cluster/images.sh (vaultcert:dev, the fake vault); pods use imagePullPolicy Never or IfNotPresent.
# No internet and no cluster DNS: pods reach the API server through the kubernetes Service, and the host (for a
# fake vault running there) at its own address; anything beyond this machine is dropped.
# Why each setting is what it is: the comments below, and shared/CLUSTER.md beside the work tree (the facts seen
# on these machines).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat openssl ca-certificates curl)
CNI_BIN_DIR=/usr/lib/cni   # where Debian's containernetworking-plugins installs them
STARTED=()                 # components started so far, checked for early death while waiting

# ---------------------------------------------------------------------------------------------------------------
# Preconditions

refuse_if_up() {
  local port busy=()
  if [[ -e $RUN ]]; then
    die "$RUN exists: the cluster is up, or an earlier up.sh stopped half-way. Run hack/cluster/down.sh first."
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then die "bridge $BRIDGE exists: run hack/cluster/down.sh first"; fi
  for port in "${PORTS[@]}"; do
    if [[ -n $(ss -Htln "sport = :$port") ]]; then busy+=("$port"); fi
  done
  [[ ${#busy[@]} -eq 0 ]] || die "ports in use: ${busy[*]} (another cluster on this machine? ss -ltnp)"
}

install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

prepare_dirs() {
  rm -rf "$LOGS"
  mkdir -p "$RUN" "$LOGS" "$PKI" "$PIDS" "$KUBECONFIGS" "$RUN"/{etcd,containerd,cni/net.d,cni/ipam,kubelet/root} \
    "$RUN"/{kubelet/pki,kubelet/volume-plugins,pod-logs,flexvolume,kube-proxy}
  chmod 700 "$RUN" "$PKI"
}

save_sysctls() {
  local k
  for k in "${SYSCTLS[@]}"; do
    if [[ -r /proc/sys/$k ]]; then echo "$k $(< "/proc/sys/$k")"; fi
  done > "$SYSCTLS_BEFORE"
}

# ---------------------------------------------------------------------------------------------------------------
# PKI: one cluster CA for serving and client certificates, a front-proxy CA for the aggregation layer's request
# headers, and the service-account signing key. EC P-256 throughout: fast to generate, accepted everywhere.

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

new_ca() { # name common-name
  new_key "$PKI/$1.key"
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -out "$PKI/$1.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature
}

new_cert() { # name ca subject serverAuth|clientAuth [subjectAltName]
  local name=$1 ca=$2 subject=$3 usage=$4 sans=${5:-} ext
  ext=$'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage='"$usage"
  [[ -z $sans ]] || ext+=$'\n'"subjectAltName=$sans"
  new_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" |
    openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 365 -extfile <(echo "$ext") -out "$PKI/$name.crt" 2>/dev/null
}

make_pki() {
  local ip=$1
  new_ca ca vaultcert-cluster-ca
  new_ca front-proxy-ca vaultcert-front-proxy-ca
  new_cert apiserver ca /CN=kube-apiserver serverAuth \
    "IP:$ip,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The API server calls kubelets (logs, exec) as a member of system:masters, which kubelet's webhook
  # authorizer lets through.
  new_cert apiserver-kubelet-client ca /O=system:masters/CN=kube-apiserver-kubelet-client clientAuth
  new_cert front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
  new_cert admin ca /O=system:masters/CN=vaultcert-admin clientAuth
  new_cert kube-controller-manager ca /CN=system:kube-controller-manager clientAuth
  new_cert kube-scheduler ca /CN=system:kube-scheduler clientAuth
  new_cert kube-proxy ca /CN=system:kube-proxy clientAuth
  # The Node authorizer and NodeRestriction know a kubelet by this name and group.
  new_cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  new_cert kubelet-serving ca "/CN=$NODE_NAME" serverAuth "IP:$ip,IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
  new_key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
}

write_kubeconfig() { # file certificate-name server
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vaultcert
  cluster:
    server: $3
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: vaultcert
  context: {cluster: vaultcert, user: $2}
current-context: vaultcert
EOF
  chmod 600 "$1"
}

write_kubeconfigs() {
  local server="https://$1:$APISERVER_PORT" name
  for name in admin kube-controller-manager kube-scheduler kube-proxy kubelet; do
    write_kubeconfig "$KUBECONFIGS/$name.kubeconfig" "$name" "$server"
  done
}

# ---------------------------------------------------------------------------------------------------------------
# Component configuration

write_containerd_config() {
  # A private instance: its own socket, root and state, so it never meets another containerd on the machine.
  # restrict_oom_score_adj: the VM lacks CAP_SYS_RESOURCE, and runc fails to lower oom_score_adj below ours.
  # netns_mounts_under_state_dir: pod network namespaces are mounted under our state, not /var/run/netns.
  # The runc shim's Root and the opt plugin's path default to machine-wide /run/containerd/runc and /opt.
  cat > "$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "$RUN/containerd/runc"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN_DIR"
  conf_dir = "$RUN/cni/net.d"
EOF
}

write_cni_config() {
  # bridge + host-local; containerd adds the loopback plugin itself. No masquerade: pods only ever talk to
  # each other, Services and this machine. The IPAM state lives with ours, not in /var/lib/cni.
  cat > "$RUN/cni/net.d/10-vaultcert.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "vaultcert",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$RUN/cni/ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  local ip=$1
  # cgroupfs and failCgroupV1=false: the host has cgroup v1 and no systemd. oomScoreAdj 0: see containerd.
  # podLogsDir (not podLogsDirectory, which is silently ignored). Low eviction thresholds and no image GC: a dev
  # machine's disk may be fuller than kubelet's defaults allow, and imported images cannot be pulled again.
  cat > "$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
podLogsDir: $RUN/pod-logs
volumePluginDir: $RUN/kubelet/volume-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

write_kube_proxy_config() {
  # oomScoreAdj 0: see containerd. Zero conntrack settings and no localhost NodePorts leave the machine's
  # conntrack limits and route_localnet as they are; NodePorts listen on the node's address only.
  cat > "$RUN/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIGS/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
oomScoreAdj: 0
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
nodePortAddresses: [primary]
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# Network: the bridge exists before the first pod so the service range can be routed onto it (the kernel has no
# dummy interfaces to hold it); a rule drops whatever pods send anywhere but the bridge.

setup_network() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$POD_GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route add "$SERVICE_CIDR" dev "$BRIDGE"
  # In mangle FORWARD, which runs before filter FORWARD, where kube-proxy's KUBE-FORWARD accepts marked and
  # established traffic first: nothing kube-proxy does can let a pod's packet out. Traffic to this machine
  # (the API server, a fake vault on the host) is INPUT, not FORWARD, and stays allowed.
  iptables -t mangle -N VAULTCERT-FORWARD
  iptables -t mangle -A VAULTCERT-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" \
    -m comment --comment "vaultcert cluster: pods reach nothing beyond this machine" -j DROP
  iptables -t mangle -A FORWARD -j VAULTCERT-FORWARD
}

# ---------------------------------------------------------------------------------------------------------------
# Processes

# start runs one component in the background, in its own session (it outlives this script and a Ctrl-C) and its
# own cgroup (down.sh finds whatever it forks), with its log and pid file in the state directory.
start() { # name command...
  local name=$1
  shift
  mkdir -p "$TRACK_CGROUP/$name"
  (
    echo "$BASHPID" > "$TRACK_CGROUP/$name/cgroup.procs"
    exec setsid "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null
  ) &
  echo $! > "$PIDS/$name.pid"
  STARTED+=("$name")
}

# check_started fails fast, with the end of its log, when a component has died.
check_started() {
  local name
  for name in "${STARTED[@]}"; do
    if ! kill -0 "$(< "$PIDS/$name.pid")" 2>/dev/null; then
      tail -n 20 "$LOGS/$name.log" >&2
      die "$name exited (log: $LOGS/$name.log)"
    fi
  done
}

wait_until() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    check_started
    ((SECONDS < deadline)) || die "timed out waiting for $what (logs: $LOGS)"
    sleep 0.2
  done
}

start_etcd() {
  start etcd "$BIN/etcd" --name vaultcert --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "vaultcert=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
}

start_apiserver() {
  local ip=$1
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$ip" --advertise-address "$ip" --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --profiling=false
}

start_containerd() {
  start containerd containerd --config "$RUN/containerd/config.toml"
}

start_controller_manager() {
  local kc=$KUBECONFIGS/kube-controller-manager.kubeconfig
  # One instance: no leader election to wait for. The flex-volume directory defaults to a machine-wide path.
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size "${POD_CIDR#*/}" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --flex-volume-plugin-dir "$RUN/flexvolume"
}

start_scheduler() {
  local kc=$KUBECONFIGS/kube-scheduler.kubeconfig
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
}

start_kubelet() {
  local ip=$1
  start kubelet "$BIN/kubelet" --config "$RUN/kubelet/config.yaml" \
    --kubeconfig "$KUBECONFIGS/kubelet.kubeconfig" --root-dir "$RUN/kubelet/root" --cert-dir "$RUN/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$ip"
}

start_kube_proxy() {
  start kube-proxy "$BIN/kube-proxy" --config "$RUN/kube-proxy/config.yaml"
}

# ---------------------------------------------------------------------------------------------------------------
# Checks

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$KUBECONFIGS/admin.kubeconfig" "$@"; }

etcd_ready() { curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"; }
containerd_ready() { ctr --address "$CONTAINERD_SOCK" version; }
apiserver_ready() { kubectl_admin get --raw /readyz; }
node_ready() {
  [[ $(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
default_service_account() { kubectl_admin -n default get serviceaccount default; }
smoke_pod_running() { [[ $(kubectl_admin -n default get pod vaultcert-smoke -o jsonpath='{.status.phase}') == Running ]]; }
# The kubernetes Service from the host: kube-proxy's rules are in place.
service_reachable() { kubectl_admin --server "https://$KUBERNETES_SERVICE_IP" get --raw /readyz; }

import_images() {
  local tar
  for tar in "$IMAGES"/*.tar; do
    ctr -n k8s.io --address "$CONTAINERD_SOCK" images import "$tar" >/dev/null
  done
}

# run_smoke_pod runs the pause image as a pod that passes the restricted Pod Security level.
run_smoke_pod() {
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: vaultcert-smoke, namespace: default}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: pause
    image: $PAUSE_IMAGE
    imagePullPolicy: Never
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
}

on_exit() {
  [[ $1 == 0 ]] || log "up.sh failed; logs are in $LOGS. Run hack/cluster/down.sh to clean up before trying again."
}

main() {
  local ip start_time=$SECONDS
  require_root
  refuse_if_up
  install_packages
  BIN=$("$CLUSTER_DIR/binaries.sh")
  "$CLUSTER_DIR/images.sh" --no-import pause
  trap 'on_exit $?' EXIT
  prepare_dirs
  save_sysctls
  ip=$(host_ip)
  [[ -n $ip ]] || die "no IPv4 address on the default route's interface"
  log "state in $STATE, node $NODE_NAME at $ip"

  make_pki "$ip"
  write_kubeconfigs "$ip"
  write_containerd_config
  write_cni_config
  write_kubelet_config "$ip"
  write_kube_proxy_config
  setup_network

  start_etcd
  start_containerd
  wait_until 30 etcd etcd_ready   # else the API server's first seconds of log are connection errors
  start_apiserver "$ip"
  wait_until 30 containerd containerd_ready
  import_images
  wait_until 60 "the API server" apiserver_ready
  log "API server ready after $((SECONDS - start_time)) s"

  start_controller_manager
  start_scheduler
  start_kubelet "$ip"
  start_kube_proxy
  wait_until 60 "node $NODE_NAME Ready" node_ready
  log "node Ready after $((SECONDS - start_time)) s"
  wait_until 30 "the default ServiceAccount" default_service_account
  run_smoke_pod
  wait_until 60 "the smoke pod to run" smoke_pod_running
  wait_until 30 "the kubernetes Service through kube-proxy" service_reachable
  kubectl_admin -n default delete pod vaultcert-smoke --wait=false >/dev/null

  cp "$KUBECONFIGS/admin.kubeconfig" "$ADMIN_KUBECONFIG"
  log "cluster up in $((SECONDS - start_time)) s; kubectl is $BIN/kubectl"
  echo "export KUBECONFIG=$ADMIN_KUBECONFIG"
  echo "export PATH=$BIN:\$PATH"
}

main "$@"
