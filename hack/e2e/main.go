// Command e2e runs vaultcert as users run it: the Helm chart installed into the local single-node cluster
// (hack/cluster: kubelet, containerd, pods), two replicas with leader election in a namespace enforcing the
// "restricted" Pod Security level, against the fake Key Vault, which runs here on this machine's address where
// pods reach it. It asserts, failing with a non-zero exit:
//
//   - both pods become Ready through their probes; metrics are scraped through the Service;
//   - a ClusterVaultConnection using the controller's own workload identity (the projected token the chart mounts,
//     as the Azure Workload Identity webhook would) and a VaultConnection using a namespace ServiceAccount both sync;
//   - a rotation in the vault rolls out the Deployment named in rolloutRestartTargets; its pods serve the Secret
//     over HTTPS, and a handshake verified against ca.crt shows the new certificate;
//   - deleting a VaultCertificate with deletionPolicy Delete lets garbage collection delete its Secret; Retain keeps it;
//   - SIGKILL of the leader's process: a new leader takes over and syncs the next rotation (the seconds are reported);
//   - helm upgrade with changed values and helm uninstall keep every Secret, as docs/upgrades.md says.
//
// `make e2e` brings the cluster up, builds and imports the images, runs this and takes the cluster down.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

const (
	release       = "vaultcert"
	systemNS      = "vaultcert-system"
	tenantNS      = "team-a"
	controllerSA  = "vaultcert" // the chart's ServiceAccount for release "vaultcert"
	leaseName     = "vaultcert.vaultcert.io"
	controllerApp = "00000000-0000-4000-8000-0000000000c1" // the controller's workload identity (client ID)
	tenantApp     = "00000000-0000-4000-8000-0000000000a1" // team-a's workload identity
	tenantSA      = "kv-reader"
	webDNSName    = "web.team-a.example.test"
)

// options are the command's flags.
type options struct {
	kubeconfig, helm, chart, image string
	containerd                     string
	timeout                        time.Duration
}

// e2e is one run: the cluster's client, the fake vault and what the steps share.
type e2e struct {
	o       options
	ctx     context.Context
	k8s     client.Client
	cfg     *rest.Config
	vault   *fakevault.Server
	hostIP  string
	work    string
	timings []timing
}

type timing struct {
	what string
	took time.Duration
}

func main() {
	var o options
	state := os.Getenv("VAULTCERT_CLUSTER_DIR")
	if state == "" {
		state = "/var/tmp/vaultcert-cluster"
	}
	flag.StringVar(&o.kubeconfig, "kubeconfig", filepath.Join(state, "admin.kubeconfig"), "The local cluster's admin kubeconfig (hack/cluster/up.sh writes it).")
	flag.StringVar(&o.containerd, "containerd", filepath.Join(state, "run", "containerd", "containerd.sock"), "The node's containerd socket (for the leader's process ID).")
	flag.StringVar(&o.helm, "helm", "bin/helm", "The helm binary (make helm installs it).")
	flag.StringVar(&o.chart, "chart", "charts/vaultcert", "The chart.")
	flag.StringVar(&o.image, "image", "vaultcert:dev", "The vaultcert image imported into the cluster (hack/cluster/images.sh).")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "How long each step may take.")
	flag.Parse()
	start := time.Now()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "\ne2e FAILED after %s: %v\n", time.Since(start).Round(time.Second), err)
		os.Exit(1)
	}
	fmt.Printf("\ne2e passed in %s\n", time.Since(start).Round(time.Second))
}

func run(o options) error {
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("the cluster's kubeconfig (run hack/cluster/up.sh): %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := vaultcertv1.AddToScheme(scheme); err != nil {
		return err
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "vaultcert-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	hostIP, err := ownAddress()
	if err != nil {
		return err
	}
	// The fake vault and its authority listen on this machine's address, which pods reach (nothing beyond it).
	vault, err := fakevault.Start(fakevault.Options{Addr: net.JoinHostPort(hostIP, "0"), Hostnames: []string{hostIP}})
	if err != nil {
		return err
	}
	defer vault.Close()
	e := &e2e{o: o, ctx: ctx, k8s: k8s, cfg: cfg, vault: vault, hostIP: hostIP, work: work}
	defer e.printTimings()
	steps := []struct {
		name string
		fn   func() error
	}{
		{"trust the cluster's ServiceAccount issuer in the fake Entra ID", e.trustIssuer},
		{"helm install: 2 replicas, restricted namespace, the chart mounting the controller's workload identity token", e.install},
		{"metrics through the Service", e.scrapeMetrics},
		{"ClusterVaultConnection with the controller's own workload identity", e.clusterConnection},
		{"VaultConnection with a namespace ServiceAccount; rotation rolls the Deployment out", e.namespaceConnectionAndRollout},
		{"deletionPolicy: garbage collection deletes the Secret (Delete), keeps it (Retain)", e.deletionPolicies},
		{"leader failover: SIGKILL of the leader's process, the next rotation synced", e.leaderFailover},
		{"helm upgrade with changed values, then helm uninstall: no Secret lost", e.upgradeAndUninstall},
	}
	for _, s := range steps {
		fmt.Printf("\n==> %s\n", s.name)
		started := time.Now()
		if err := s.fn(); err != nil {
			e.dumpState()
			return fmt.Errorf("%s: %w", s.name, err)
		}
		e.timings = append(e.timings, timing{s.name, time.Since(started)})
	}
	return nil
}

// trustIssuer registers the API server's ServiceAccount issuer and keys (OIDC discovery) with the fake Entra ID,
// and the federated credentials of the controller's and team-a's identities, as an admin would in Azure.
func (e *e2e) trustIssuer() error {
	hc, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		return err
	}
	get := func(path string) ([]byte, error) {
		resp, err := hc.Get(strings.TrimSuffix(e.cfg.Host, "/") + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s %v", path, resp.StatusCode, body, err)
		}
		return body, nil
	}
	doc, err := get("/.well-known/openid-configuration")
	if err != nil {
		return err
	}
	var discovery struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(doc, &discovery); err != nil || discovery.Issuer == "" {
		return fmt.Errorf("OIDC discovery without an issuer: %s", doc)
	}
	jwks, err := get("/openid/v1/jwks")
	if err != nil {
		return err
	}
	if err := e.vault.AddFederatedIssuer(discovery.Issuer, jwks); err != nil {
		return err
	}
	e.vault.AddFederatedCredential(controllerApp, discovery.Issuer, "system:serviceaccount:"+systemNS+":"+controllerSA)
	e.vault.AddFederatedCredential(tenantApp, discovery.Issuer, "system:serviceaccount:"+tenantNS+":"+tenantSA)
	fmt.Printf("    issuer %s; vault and authority at %s\n", discovery.Issuer, e.vault.URL())
	return nil
}

// install creates the restricted namespace and installs the chart with two replicas, waiting for both pods to be
// Ready through their probes.
func (e *e2e) install() error {
	for _, ns := range []string{systemNS, tenantNS} {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}}}
		if err := e.k8s.Create(e.ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	values, err := e.values(nil)
	if err != nil {
		return err
	}
	if _, err := e.helm("install", release, e.o.chart, "-n", systemNS, "-f", values, "--wait", "--timeout", e.o.timeout.String()); err != nil {
		return err
	}
	pods, err := e.controllerPods(2)
	if err != nil {
		return err
	}
	for _, p := range pods {
		fmt.Printf("    pod %s Ready (uid %d, restricted)\n", p.Name, ptr.Deref(p.Spec.SecurityContext.RunAsUser, -1))
	}
	return nil
}

// values writes the chart values of this run, with extra entries on top, and returns the file.
func (e *e2e) values(extra map[string]any) (string, error) {
	repo, tag, _ := strings.Cut(e.o.image, ":")
	vaultHost := strings.TrimSuffix(strings.TrimPrefix(e.vault.URL(), "https://"), "/")
	v := map[string]any{
		"image":        map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"replicaCount": 2,
		"hostPolicy": map[string]any{
			"vaultDomains":   []string{"vault.azure.net", vaultHost},
			"authorityHosts": []string{"login.microsoftonline.com", vaultHost},
		},
		"azureWorkloadIdentity": map[string]any{"mountToken": true, "clientID": controllerApp, "tenantID": e.vault.TenantID(),
			"authorityHost": e.vault.AuthorityHost()},
	}
	for k, val := range extra {
		v[k] = val
	}
	data, _ := json.Marshal(v) // YAML is a superset of JSON
	path := filepath.Join(e.work, fmt.Sprintf("values-%d.yaml", time.Now().UnixNano()))
	return path, os.WriteFile(path, data, 0o600)
}

// scrapeMetrics reads the controller's metrics through the metrics Service's cluster IP (kube-proxy).
func (e *e2e) scrapeMetrics() error {
	var svc corev1.Service
	if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: systemNS, Name: release + "-metrics"}, &svc); err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s/metrics", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port)))
	// A new connection each time: kube-proxy picks a pod per connection, and only the leader has vaultcert's own
	// series (the standby reconciles nothing).
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return e.eventually("metrics from "+url, func() (bool, string) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		if !bytes.Contains(body, []byte("controller_runtime_reconcile_total")) || !bytes.Contains(body, []byte("vaultcert_")) {
			return false, fmt.Sprintf("%d: no vaultcert metrics", resp.StatusCode)
		}
		fmt.Printf("    %s: %d bytes of metrics\n", url, len(body))
		return true, ""
	})
}

// clusterConnection: a ClusterVaultConnection whose identity is the controller's own workload identity (the
// projected token file the chart mounts); a VaultCertificate in team-a syncs through it.
func (e *e2e) clusterConnection() error {
	if _, err := e.vault.Seed(fakevault.CertSpec{Name: "shared", KeyType: "EC", ChainDepth: 3, DNSNames: []string{"shared.example.test"}}); err != nil {
		return err
	}
	conn := &vaultcertv1.ClusterVaultConnection{
		ObjectMeta: metav1.ObjectMeta{Name: "shared-vault"},
		Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: vaultcertv1.ConnectionSpec{
			VaultURL: e.vault.URL(),
			// No serviceAccountRef: the controller's own projected token (AZURE_FEDERATED_TOKEN_FILE).
			Auth: &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{ClientID: controllerApp, TenantID: e.vault.TenantID()}},
			Cloud: &vaultcertv1.CloudConfig{AuthorityHost: e.vault.AuthorityHost(), CABundle: string(e.vault.CAPEM()),
				DisableInstanceDiscovery: true},
		}},
	}
	if err := e.k8s.Create(e.ctx, conn); err != nil {
		return err
	}
	if err := e.create(certificate("shared", "shared", vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: conn.Name})); err != nil {
		return err
	}
	vc, err := e.waitSynced("shared", "")
	if err != nil {
		return err
	}
	fmt.Printf("    VaultCertificate shared Ready at version %s through the controller's workload identity\n", vc.Status.Version)
	return nil
}

// namespaceConnectionAndRollout: a VaultConnection in team-a using its own ServiceAccount; a Deployment of HTTPS
// servers mounting the Secret, named in rolloutRestartTargets, rolls out after a rotation, and its pods serve the
// new certificate (verified against ca.crt).
func (e *e2e) namespaceConnectionAndRollout() error {
	if _, err := e.vault.Seed(fakevault.CertSpec{Name: "web", KeyType: "EC", ChainDepth: 3, DNSNames: []string{webDNSName}}); err != nil {
		return err
	}
	if err := e.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: tenantSA, Namespace: tenantNS}}); err != nil {
		return err
	}
	if err := e.create(&vaultcertv1.VaultConnection{
		ObjectMeta: metav1.ObjectMeta{Name: "team-vault", Namespace: tenantNS},
		Spec: vaultcertv1.ConnectionSpec{
			VaultURL: e.vault.URL(),
			Auth: &vaultcertv1.ConnectionAuth{WorkloadIdentity: &vaultcertv1.WorkloadIdentityAuth{
				ServiceAccountRef: &vaultcertv1.ServiceAccountReference{Name: tenantSA}, ClientID: tenantApp, TenantID: e.vault.TenantID()}},
			Cloud: &vaultcertv1.CloudConfig{AuthorityHost: e.vault.AuthorityHost(), CABundle: string(e.vault.CAPEM())},
		},
	}); err != nil {
		return err
	}
	vc := certificate("web", "web", vaultcertv1.ConnectionReference{Name: "team-vault"})
	vc.Spec.RolloutRestartTargets = []vaultcertv1.RolloutRestartTarget{{Kind: "Deployment", Name: "web"}}
	if err := e.create(vc); err != nil {
		return err
	}
	v1, err := e.waitSynced("web", "")
	if err != nil {
		return err
	}
	if err := e.create(webDeployment()); err != nil {
		return err
	}
	pod, err := e.waitDeploymentPod("web", "")
	if err != nil {
		return err
	}
	if err := e.servesVersion(pod, v1.Status.Thumbprint); err != nil {
		return err
	}
	fmt.Printf("    pod %s serves version %s\n", pod.Name, v1.Status.Version)

	rotatedAt := time.Now()
	v2, err := e.vault.Rotate("web")
	if err != nil {
		return err
	}
	if err := e.refresh("web"); err != nil {
		return err
	}
	if _, err := e.waitSynced("web", v2.Version); err != nil {
		return err
	}
	newPod, err := e.waitDeploymentPod("web", pod.Name)
	if err != nil {
		return err
	}
	if err := e.servesVersion(newPod, v2.Thumbprint); err != nil {
		return err
	}
	took := time.Since(rotatedAt)
	e.timings = append(e.timings, timing{"rotation to the rolled-out pod serving it", took})
	fmt.Printf("    rotation to pod %s (rolled out) serving version %s: %.1f s\n", newPod.Name, v2.Version, took.Seconds())
	return nil
}

// deletionPolicies: garbage collection (kube-controller-manager) deletes the Secret of a deleted VaultCertificate
// with deletionPolicy Delete; Retain's Secret stays.
func (e *e2e) deletionPolicies() error {
	ref := vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: "shared-vault"}
	gone, kept := certificate("gone", "shared", ref), certificate("kept", "shared", ref)
	kept.Spec.DeletionPolicy = vaultcertv1.DeletionPolicyRetain
	for _, vc := range []*vaultcertv1.VaultCertificate{gone, kept} {
		if err := e.create(vc); err != nil {
			return err
		}
		if _, err := e.waitSynced(vc.Name, ""); err != nil {
			return err
		}
		if err := e.k8s.Delete(e.ctx, vc); err != nil {
			return err
		}
	}
	if err := e.eventually("garbage collection to delete Secret gone-tls", func() (bool, string) {
		var s corev1.Secret
		err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: tenantNS, Name: "gone-tls"}, &s)
		return apierrors.IsNotFound(err), fmt.Sprintf("still there (%v)", err)
	}); err != nil {
		return err
	}
	// Garbage collection has run for the deleted VaultCertificates: Retain's Secret must still be there, unowned.
	var s corev1.Secret
	if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: tenantNS, Name: "kept-tls"}, &s); err != nil {
		return fmt.Errorf("deletionPolicy Retain: Secret kept-tls: %w", err)
	}
	if len(s.OwnerReferences) != 0 || len(s.Data[corev1.TLSCertKey]) == 0 {
		return fmt.Errorf("deletionPolicy Retain: Secret kept-tls has owners %v and %d bytes of tls.crt", s.OwnerReferences, len(s.Data[corev1.TLSCertKey]))
	}
	fmt.Printf("    Secret gone-tls garbage-collected; Secret kept-tls kept with its certificate\n")
	return nil
}

// leaderFailover SIGKILLs the leader's process (no Lease release, as a lost node leaves it) and deletes its pod,
// and measures the time until a rotation made right after the kill is synced by the next leader.
func (e *e2e) leaderFailover() error {
	leader, identity, err := e.leader("")
	if err != nil {
		return err
	}
	pid, err := e.containerPID(leader)
	if err != nil {
		return err
	}
	fmt.Printf("    leader: %s (%s), process %d\n", leader, identity, pid)
	var standbys []string
	pods, err := e.readyControllerPods()
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.Name != leader {
			standbys = append(standbys, p.Name)
		}
	}
	killedAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("SIGKILL %d: %w", pid, err)
	}
	// And the pod goes, as with a lost node: the kubelet must not restart the killed container in place.
	if err := e.k8s.Delete(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: leader, Namespace: systemNS}},
		client.GracePeriodSeconds(0)); err != nil {
		return err
	}
	v, err := e.vault.Rotate("shared")
	if err != nil {
		return err
	}
	if err := e.refresh("shared"); err != nil {
		return err
	}
	next, nextIdentity, err := e.leader(identity)
	if err != nil {
		return err
	}
	tookOver := time.Since(killedAt)
	if _, err := e.waitSynced("shared", v.Version); err != nil {
		return err
	}
	took := time.Since(killedAt)
	if next == leader {
		return fmt.Errorf("the killed pod %s leads again", leader)
	}
	who := "the other replica"
	if !slices.Contains(standbys, next) {
		who = "the pod that replaced the killed one"
	}
	e.timings = append(e.timings, timing{"leader SIGKILLed to a new leader", tookOver},
		timing{"leader SIGKILLed to the next rotation synced", took})
	fmt.Printf("    new leader %s (%s, %s) after %.1f s; rotation synced %.1f s after the kill\n", next, nextIdentity, who, tookOver.Seconds(), took.Seconds())
	return e.eventually("two Ready controller pods again", func() (bool, string) {
		pods, err := e.readyControllerPods()
		return err == nil && len(pods) == 2, fmt.Sprintf("%d Ready (%v)", len(pods), err)
	})
}

// containerPID is the host PID of the controller container of a pod (this runs on the node, as root).
func (e *e2e) containerPID(pod string) (int, error) {
	var p corev1.Pod
	if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: systemNS, Name: pod}, &p); err != nil {
		return 0, err
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return 0, fmt.Errorf("pod %s has no container status", pod)
	}
	_, id, _ := strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
	out, err := exec.Command("ctr", "--address", e.o.containerd, "-n", "k8s.io", "tasks", "ls").Output()
	if err != nil {
		return 0, fmt.Errorf("ctr tasks ls: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no running task for container %s of pod %s", id, pod)
}

// upgradeAndUninstall: helm upgrade with changed values rolls the pods and every Secret keeps its version;
// helm uninstall removes the controller and keeps the CRDs, the VaultCertificates and every Secret.
func (e *e2e) upgradeAndUninstall() error {
	before, err := e.managedSecrets()
	if err != nil {
		return err
	}
	values, err := e.values(map[string]any{
		"logging":    map[string]any{"level": "debug"},
		"controller": map[string]any{"concurrentReconciles": 4},
	})
	if err != nil {
		return err
	}
	if _, err := e.helm("upgrade", release, e.o.chart, "-n", systemNS, "-f", values, "--wait", "--timeout", e.o.timeout.String()); err != nil {
		return err
	}
	var dep appsv1.Deployment
	if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: systemNS, Name: release}, &dep); err != nil {
		return err
	}
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--concurrent-reconciles=4") {
		return fmt.Errorf("helm upgrade did not reach the Deployment: args %s", args)
	}
	if _, err := e.controllerPods(2); err != nil {
		return err
	}
	if err := e.sameSecrets(before, "helm upgrade"); err != nil {
		return err
	}
	if _, err := e.waitSynced("web", ""); err != nil {
		return err
	}
	if _, err := e.helm("uninstall", release, "-n", systemNS, "--wait", "--timeout", e.o.timeout.String()); err != nil {
		return err
	}
	if err := e.eventually("the controller pods to go", func() (bool, string) {
		var pods corev1.PodList
		err := e.k8s.List(e.ctx, &pods, client.InNamespace(systemNS))
		return err == nil && len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items))
	}); err != nil {
		return err
	}
	var vcs vaultcertv1.VaultCertificateList
	if err := e.k8s.List(e.ctx, &vcs, client.InNamespace(tenantNS)); err != nil {
		return fmt.Errorf("after helm uninstall the VaultCertificate CRD must stay: %w", err)
	}
	if err := e.sameSecrets(before, "helm uninstall"); err != nil {
		return err
	}
	fmt.Printf("    helm upgrade and uninstall: %d Secrets unchanged, %d VaultCertificates and the CRDs kept\n", len(before), len(vcs.Items))
	return nil
}

// managedSecrets maps each Secret vaultcert wrote in team-a to its Key Vault version.
func (e *e2e) managedSecrets() (map[string]string, error) {
	var list corev1.SecretList
	if err := e.k8s.List(e.ctx, &list, client.InNamespace(tenantNS), client.MatchingLabels{vaultcertv1.LabelManagedBy: vaultcertv1.ManagedByValue}); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Name] = s.Annotations[vaultcertv1.AnnotationVersion]
	}
	return out, nil
}

// sameSecrets fails unless every Secret of before is still there at the same version.
func (e *e2e) sameSecrets(before map[string]string, after string) error {
	now, err := e.managedSecrets()
	if err != nil {
		return err
	}
	for name, version := range before {
		if now[name] != version {
			return fmt.Errorf("after %s Secret %s holds version %q, want %q", after, name, now[name], version)
		}
	}
	return nil
}

// certificate is a VaultCertificate in team-a named name for the Key Vault certificate cert, into Secret name-tls.
func certificate(name, cert string, ref vaultcertv1.ConnectionReference) *vaultcertv1.VaultCertificate {
	return &vaultcertv1.VaultCertificate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tenantNS},
		Spec:       vaultcertv1.VaultCertificateSpec{ConnectionRef: ref, CertificateName: cert, SecretName: name + "-tls"},
	}
}

// webDeployment is one HTTPS server (hack/e2e/tlsserver) mounting Secret web-tls, under the restricted level.
func webDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: tenantNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "web", Image: "vaultcert.local/tlsserver:dev", ImagePullPolicy: corev1.PullNever,
						Ports:        []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}},
						VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8443)}},
							PeriodSeconds: 1},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
					Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}}},
				},
			},
		},
	}
}

// create creates obj.
func (e *e2e) create(obj client.Object) error {
	if err := e.k8s.Create(e.ctx, obj); err != nil {
		return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// refresh annotates a team-a VaultCertificate with vaultcert.io/refresh, as a user would.
func (e *e2e) refresh(name string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, vaultcertv1.AnnotationRefresh, fmt.Sprint(time.Now().UnixNano()))
	return e.k8s.Patch(e.ctx, &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tenantNS}},
		client.RawPatch(types.MergePatchType, []byte(patch)))
}

// waitSynced waits until a team-a VaultCertificate is Ready (Synced) for its generation, at version when given.
func (e *e2e) waitSynced(name, version string) (*vaultcertv1.VaultCertificate, error) {
	var vc vaultcertv1.VaultCertificate
	err := e.eventually(fmt.Sprintf("VaultCertificate %s Ready %s", name, version), func() (bool, string) {
		if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: tenantNS, Name: name}, &vc); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		ok := c.Status == metav1.ConditionTrue && c.Reason == vaultcertv1.ReasonSynced && c.ObservedGeneration == vc.Generation &&
			(version == "" || vc.Status.Version == version)
		return ok, fmt.Sprintf("Ready=%s %s at %s: %s", c.Status, c.Reason, vc.Status.Version, c.Message)
	})
	return &vc, err
}

// waitDeploymentPod waits for a Ready pod of the Deployment other than notName, and returns it.
func (e *e2e) waitDeploymentPod(app, notName string) (*corev1.Pod, error) {
	var found *corev1.Pod
	err := e.eventually("a Ready pod of Deployment "+app, func() (bool, string) {
		var pods corev1.PodList
		if err := e.k8s.List(e.ctx, &pods, client.InNamespace(tenantNS), client.MatchingLabels{"app": app}); err != nil {
			return false, err.Error()
		}
		var seen []string
		for i := range pods.Items {
			p := &pods.Items[i]
			seen = append(seen, p.Name+" "+string(p.Status.Phase))
			if p.Name != notName && p.DeletionTimestamp.IsZero() && podReady(p) && p.Status.PodIP != "" {
				found = p
				return true, ""
			}
		}
		return false, strings.Join(seen, ", ")
	})
	return found, err
}

// servesVersion checks over TLS that the pod serves the certificate with that thumbprint, verified against the
// Secret's ca.crt for the certificate's DNS name.
func (e *e2e) servesVersion(pod *corev1.Pod, thumbprint string) error {
	var s corev1.Secret
	if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: tenantNS, Name: "web-tls"}, &s); err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
		return errors.New("Secret web-tls: no certificate in ca.crt")
	}
	return e.eventually(fmt.Sprintf("pod %s to serve %s", pod.Name, thumbprint), func() (bool, string) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", net.JoinHostPort(pod.Status.PodIP, "8443"),
			&tls.Config{RootCAs: roots, ServerName: webDNSName, MinVersion: tls.VersionTLS12})
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		sum := sha1.Sum(leaf.Raw)
		got := strings.ToUpper(hex.EncodeToString(sum[:]))
		return got == thumbprint, "serves " + got
	})
}

// leader is the pod holding the leader election Lease, and its holder identity; with not set, it waits for a
// holder other than that identity (a new leader).
func (e *e2e) leader(not string) (pod, identity string, err error) {
	err = e.eventually("a leader", func() (bool, string) {
		var lease coordinationv1.Lease
		if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: systemNS, Name: leaseName}, &lease); err != nil {
			return false, err.Error()
		}
		identity = ptr.Deref(lease.Spec.HolderIdentity, "")
		if identity == "" || identity == not {
			return false, fmt.Sprintf("holder %q", identity)
		}
		holder, _, _ := strings.Cut(identity, "_")
		var p corev1.Pod
		if err := e.k8s.Get(e.ctx, types.NamespacedName{Namespace: systemNS, Name: holder}, &p); err != nil || !p.DeletionTimestamp.IsZero() {
			return false, fmt.Sprintf("holder %q is not a running pod", holder)
		}
		pod = holder
		return true, ""
	})
	return pod, identity, err
}

// controllerPods waits until n controller pods are Ready and returns them.
func (e *e2e) controllerPods(n int) ([]corev1.Pod, error) {
	var ready []corev1.Pod
	err := e.eventually(fmt.Sprintf("%d Ready controller pods", n), func() (bool, string) {
		var err error
		ready, err = e.readyControllerPods()
		return err == nil && len(ready) == n, fmt.Sprintf("%d Ready (%v)", len(ready), err)
	})
	return ready, err
}

func (e *e2e) readyControllerPods() ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := e.k8s.List(e.ctx, &pods, client.InNamespace(systemNS), client.MatchingLabels{"app.kubernetes.io/name": "vaultcert"}); err != nil {
		return nil, err
	}
	var ready []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp.IsZero() && podReady(&p) {
			ready = append(ready, p)
		}
	}
	return ready, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// helm runs the helm binary against the cluster and returns its output.
func (e *e2e) helm(args ...string) (string, error) {
	cmd := exec.Command(e.o.helm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.o.kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// eventually polls cond every 250 ms until it holds or the step's timeout passes.
func (e *e2e) eventually(what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(e.o.timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %s", e.o.timeout, what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// dumpState prints what helps to see why a step failed: pods, VaultCertificates and the controller's logs.
func (e *e2e) dumpState() {
	fmt.Println("\n--- state at the failure ---")
	kubectl := func(args ...string) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", e.o.kubeconfig}, args...)...)
		out, _ := cmd.CombinedOutput()
		fmt.Printf("$ kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	kubectl("get", "pods", "-A", "-o", "wide")
	kubectl("get", "vaultcertificates,vaultconnections", "-A", "-o", "wide")
	kubectl("get", "clustervaultconnections", "-o", "wide")
	kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
	kubectl("logs", "-n", systemNS, "-l", "app.kubernetes.io/name=vaultcert", "--tail=60", "--prefix")
}

func (e *e2e) printTimings() {
	fmt.Println("\ntimings:")
	for _, t := range e.timings {
		fmt.Printf("  %-95s %6.1f s\n", t.what, t.took.Seconds())
	}
}

// ownAddress is this machine's first non-loopback IPv4 address: pods reach it (and nothing beyond the machine).
func ownAddress() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() &&
			!strings.HasPrefix(ipn.IP.String(), "10.244.") {
			return ipn.IP.String(), nil
		}
	}
	return "", errors.New("no non-loopback IPv4 address on this machine")
}
