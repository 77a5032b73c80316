#!/usr/bin/env bash
# smoke.sh proves, against a cluster started by up.sh, what issue 13 asks of it: the vaultcert image runs as
# non-root under the restricted Pod Security level and `kubectl logs` reads it; the real controller installs
# with config/default and rolls out (in-cluster config through the kubernetes Service, probes, leader election);
# a Deployment rolls out again on a template change; the garbage collector deletes a Secret whose owner is gone;
# the host reaches pod and Service IPs; a pod reaches the API server and this machine but nothing beyond it.
#
#   hack/cluster/images.sh && hack/cluster/smoke.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS=vaultcert-smoke
overlay=$(mktemp -d)   # kustomize overlay for config/default
trap 'rm -rf "$overlay"' EXIT
BIN=$("$CLUSTER_DIR/binaries.sh")
export KUBECONFIG=$ADMIN_KUBECONFIG
k() { "$BIN/kubectl" "$@"; }
step() { log "--- $*"; }

# retry runs a command until it succeeds, for up to 15 s: kube-proxy writes a new Service's rules about a second
# after its endpoints are ready.
retry() {
  local deadline=$((SECONDS + 15))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# restricted is the pod securityContext the restricted Pod Security level asks for.
restricted_overrides() { # name image args-json
  cat <<EOF
{"spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "$1", "image": "$2", "imagePullPolicy": "Never", "args": $3,
    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}
EOF
}

make_namespace() {
  step "namespace $NS enforcing the restricted Pod Security level"
  k create namespace "$NS"
  k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
}

vaultcert_help_pod() {
  local logs
  step "vaultcert:dev --help as a restricted pod, and its logs"
  k -n "$NS" run vaultcert-help --image=vaultcert:dev --image-pull-policy=Never --restart=Never \
    --overrides="$(restricted_overrides vaultcert-help vaultcert:dev '["--help"]')"
  k -n "$NS" wait pod/vaultcert-help --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s
  logs=$(k -n "$NS" logs vaultcert-help)
  echo "${logs:0:300}..."
  [[ $logs == *-leader-elect* ]] || { log "no usage text in the logs"; exit 1; }
}

# root_refused shows the restricted level is enforced: the same image forced to run as root is refused.
root_refused() {
  local out
  step "the same pod as root is refused by Pod Security admission"
  out=$(k -n "$NS" run as-root --image=vaultcert:dev --image-pull-policy=Never --restart=Never \
    --overrides='{"spec": {"securityContext": {"runAsUser": 0}}}' -- --help 2>&1 || true)
  echo "${out:0:200}..."
  [[ $out == *'violates PodSecurity "restricted'* ]] || { log "a root pod was not refused"; exit 1; }
}

# controller_rollout installs config/default through a kustomize overlay that only swaps the image for
# vaultcert:dev (kustomize wants the base as a relative path), and waits for both replicas and an elected leader.
controller_rollout() {
  local holder
  step "the controller from config/default with vaultcert:dev (2 replicas, leader election, probes)"
  cat > "$overlay/kustomization.yaml" <<EOF
resources: [$(realpath --relative-to="$overlay" "$REPO/config/default")]
images: [{name: ghcr.io/vaultcert/vaultcert, newName: vaultcert, newTag: dev}]
EOF
  k apply --server-side -k "$overlay" >/dev/null
  k -n vaultcert-system rollout status deployment/vaultcert --timeout=120s
  k -n vaultcert-system get pods -o wide
  retry leader_elected
  holder=$(k -n vaultcert-system get lease vaultcert.vaultcert.io -o jsonpath='{.spec.holderIdentity}')
  log "leader: $holder (in-cluster config through the kubernetes Service works)"
  step "a second rollout on a pod-template change"
  k -n vaultcert-system patch deployment vaultcert --type merge \
    -p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"smoke/restarted\":\"$(date +%s)\"}}}}}"
  k -n vaultcert-system rollout status deployment/vaultcert --timeout=120s
  k -n vaultcert-system get replicasets
  step "the controller's processes run as 65532"
  controller_users
  k -n vaultcert-system logs deployment/vaultcert --tail=3
}

leader_elected() {
  [[ -n $(k -n vaultcert-system get lease vaultcert.vaultcert.io -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) ]]
}

# controller_users prints the user of every vaultcert process in a pod (other vaultcert processes on the machine,
# a benchmark's for example, are not in kubepods) and fails unless all run as 65532.
controller_users() {
  local pid uid n=0
  for pid in $(pgrep -x vaultcert); do
    grep -q kubepods "/proc/$pid/cgroup" 2>/dev/null || continue
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    log "vaultcert pid $pid runs as uid $uid"
    [[ $uid == 65532 ]] || { log "not 65532"; exit 1; }
    n=$((n + 1))
  done
  ((n > 0)) || { log "no vaultcert process found in a pod"; exit 1; }
}

garbage_collection() {
  local uid
  step "garbage collection of a Secret owned by a ConfigMap"
  k -n "$NS" create configmap owner --from-literal=a=b
  uid=$(k -n "$NS" get configmap owner -o jsonpath='{.metadata.uid}')
  k -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: owned
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: $uid}]
stringData: {k: v}
EOF
  k -n "$NS" delete configmap owner
  k -n "$NS" wait secret/owned --for=delete --timeout=60s
  log "the owned Secret is gone"
}

# fakevault_service runs the fake vault as a Deployment and a Service, reached from the host by pod IP and by
# ClusterIP (kube-proxy).
fakevault_service() {
  local pod_ip svc_ip
  step "the fake vault as a Deployment and a Service; the host reaches its pod IP and ClusterIP"
  k -n "$NS" create deployment fakevault --image=vaultcert.local/fakevault:dev --port=8443 --dry-run=client -o json |
    jq --argjson o "$(restricted_overrides fakevault vaultcert.local/fakevault:dev '["-addr", ":8443"]')" \
      '.spec.template.spec.securityContext = $o.spec.securityContext |
       .spec.template.spec.containers[0] += $o.spec.containers[0]' | k apply -f -
  k -n "$NS" expose deployment fakevault --port=8443
  k -n "$NS" rollout status deployment/fakevault --timeout=60s
  pod_ip=$(k -n "$NS" get pods -l app=fakevault -o jsonpath='{.items[0].status.podIP}')
  svc_ip=$(k -n "$NS" get service fakevault -o jsonpath='{.spec.clusterIP}')
  curl -sSfk --max-time 5 "https://$pod_ip:8443/admin/counts" -o /dev/null
  log "pod IP $pod_ip answers"
  retry curl -sSfk --max-time 5 "https://$svc_ip:8443/admin/counts" -o /dev/null
  log "ClusterIP $svc_ip answers"
}

# pod_egress enters the fake vault pod's network namespace: the kubernetes Service and this machine answer,
# the outside interface's gateway does not (dropped by up.sh's rule, whose counter goes up).
pod_egress() {
  local pid gateway before after
  step "from inside a pod: the kubernetes Service and this machine yes, beyond it no"
  pid=$(pgrep -f '^/fakevault' | head -n 1)
  gateway=$(ip -4 route show default | awk '{print $3; exit}')
  nsenter -t "$pid" -n curl -sSk --max-time 5 "https://$KUBERNETES_SERVICE_IP/readyz" -o /dev/null -w 'kubernetes Service: HTTP %{http_code}\n'
  nsenter -t "$pid" -n curl -sSk --max-time 5 "https://$(host_ip):$APISERVER_PORT/readyz" -o /dev/null -w 'this machine: HTTP %{http_code}\n'
  before=$(iptables -t mangle -L VAULTCERT-FORWARD -v -x -n | awk '/DROP/ {print $1}')
  if nsenter -t "$pid" -n curl -sS --max-time 3 "http://$gateway/" -o /dev/null 2>/dev/null; then
    log "a pod reached $gateway beyond this machine"; exit 1
  fi
  after=$(iptables -t mangle -L VAULTCERT-FORWARD -v -x -n | awk '/DROP/ {print $1}')
  ((after > before)) || { log "the drop rule did not count the packets"; exit 1; }
  log "$gateway unreachable from the pod; VAULTCERT-FORWARD dropped $((after - before)) packets"
}

main() {
  require_root
  [[ -f $ADMIN_KUBECONFIG ]] || die "the cluster is not up: hack/cluster/up.sh"
  k delete namespace "$NS" --ignore-not-found --wait >/dev/null
  make_namespace
  vaultcert_help_pod
  root_refused
  garbage_collection
  fakevault_service
  pod_egress
  controller_rollout
  k delete namespace "$NS" --wait=false >/dev/null
  k delete -k "$overlay" --wait=false >/dev/null
  log "smoke passed"
}

main "$@"
