// Command demo shows vaultcert end to end on one machine, with nothing from Azure: a real kube-apiserver and etcd
// (envtest), the project's fake Key Vault (HTTPS, 401 challenge, token authority), and the real vaultcert binary.
// It applies config/samples, waits for Ready, proves every Secret with a TLS handshake that verifies the chain
// against ca.crt and the DNS name, shows the certificate vaultcert created in the vault from its policy, rotates a certificate in the vault and shows the Secret follow, then exits 0
// (or keeps running with --keep-running). `make demo` runs it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/hack/internal/localcluster"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
	"github.com/vaultcert/vaultcert/internal/tlscheck"
)

// The demo identity: the controller's own service principal, handed to it through the environment the way
// DefaultAzureCredential reads it in a real deployment.
const (
	demoClientID     = "00000000-0000-4000-8000-0000000000de"
	demoClientSecret = "demo-client-secret"
)

// demoCertificate is a sample VaultCertificate and what the fake vault holds for it.
type demoCertificate struct {
	vcName, secretName, dnsName string
	spec                        fakevault.CertSpec
}

var demoCertificates = []demoCertificate{
	{vcName: "shop-tls", secretName: "shop-tls", dnsName: "shop.example.com", spec: fakevault.CertSpec{
		Name: "shop-rsa", KeyType: "RSA", KeySize: 2048, ChainDepth: 3, ScrambleChain: true,
		DNSNames: []string{"shop.example.com", "www.shop.example.com"}}},
	{vcName: "api-tls", secretName: "api-tls", dnsName: "api.example.com", spec: fakevault.CertSpec{
		Name: "api-ec384", KeyType: "EC", Curve: "P-384", ChainDepth: 2, ContentType: "application/x-pem-file",
		DNSNames: []string{"api.example.com"}}},
}

// issuedCertificate is config/samples/vaultcertificate-issued.yaml: not seeded, vaultcert creates it in the vault
// from its spec.issuance policy.
var issuedCertificate = demoCertificate{vcName: "web-issued-tls", secretName: "web-issued-tls", dnsName: "www.web.example.com",
	spec: fakevault.CertSpec{Name: "web-issued"}}

func main() {
	var (
		binary      string
		samples     string
		keepRunning bool
		timeout     time.Duration
	)
	flag.StringVar(&binary, "binary", "bin/vaultcert", "The vaultcert binary to run.")
	flag.StringVar(&samples, "samples", "config/samples", "Directory of sample manifests to apply.")
	flag.BoolVar(&keepRunning, "keep-running", false, "Keep the control plane, the fake vault and the controller running until Ctrl-C.")
	flag.DurationVar(&timeout, "timeout", 2*time.Minute, "How long to wait for each step.")
	flag.Parse()
	if err := run(binary, samples, keepRunning, timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(binary, samples string, keepRunning bool, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "vaultcert-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("starting a local control plane (kube-apiserver + etcd)")
	cluster, err := localcluster.Start(work, "demo-admin", 0, 0)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()
	k8s, kubeconfigPath := cluster.Client, cluster.KubeconfigPath
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, localcluster.Kubectl(), append([]string{"--kubeconfig", kubeconfigPath}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	step("starting the fake Key Vault and seeding certificates")
	vault, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		return err
	}
	defer vault.Close()
	vault.AddClientSecret(demoClientID, demoClientSecret)
	for _, c := range demoCertificates {
		v, err := vault.Seed(c.spec)
		if err != nil {
			return err
		}
		fmt.Printf("    %-10s version %s  %s\n", c.spec.Name, v.Version, describe(c.spec))
	}
	fmt.Printf("    vault %s (authority %s)\n", vault.URL(), vault.AuthorityHost())

	step("starting the vaultcert binary (%s)", binary)
	// The fake vault is no Azure host: an admin allows it explicitly (VaultConnections may then use it too).
	controller := exec.CommandContext(ctx, binary, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--allowed-vault-domains="+strings.Join(append(hostpolicy.DefaultVaultDomains, vault.URL()), ","),
		"--allowed-authority-hosts="+strings.Join(append(hostpolicy.DefaultAuthorityHosts, vault.AuthorityHost()), ","))
	controller.Env = append(os.Environ(),
		"KUBECONFIG="+kubeconfigPath,
		"AZURE_TENANT_ID="+vault.TenantID(), "AZURE_CLIENT_ID="+demoClientID, "AZURE_CLIENT_SECRET="+demoClientSecret,
		"AZURE_AUTHORITY_HOST="+vault.AuthorityHost())
	logPath := filepath.Join(work, "vaultcert.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	controller.Stdout, controller.Stderr = logFile, logFile
	if err := controller.Start(); err != nil {
		return fmt.Errorf("starting %s (run `make build` first): %w", binary, err)
	}
	defer func() {
		_ = controller.Process.Signal(syscall.SIGTERM)
		_ = controller.Wait()
	}()
	showLogOnFailure := func(err error) error {
		if err != nil {
			if log, rerr := os.ReadFile(logPath); rerr == nil {
				fmt.Fprintf(os.Stderr, "\n--- vaultcert log ---\n%s\n", tail(string(log), 40))
			}
		}
		return err
	}

	step("applying %s (the ClusterVaultConnection is pointed at the fake vault)", samples)
	if err := applySamples(samples, work, vault, kubectl); err != nil {
		return err
	}

	step("waiting for every VaultCertificate to be Ready")
	for _, c := range demoCertificates {
		if err := waitReady(ctx, k8s, c.vcName, timeout); err != nil {
			out, _ := kubectl("describe", "vcert", "-n", "default", c.vcName)
			fmt.Fprintln(os.Stderr, out)
			return showLogOnFailure(err)
		}
	}
	out, _ := kubectl("get", "vcert", "-A", "-o", "wide")
	fmt.Print(out)

	step("proving each Secret with a TLS handshake verified against its ca.crt and DNS name")
	for _, c := range demoCertificates {
		if err := prove(ctx, k8s, c); err != nil {
			return showLogOnFailure(err)
		}
	}

	step("a certificate created from policy: %s (spec.issuance, not seeded in the vault)", issuedCertificate.vcName)
	if err := waitReady(ctx, k8s, issuedCertificate.vcName, timeout); err != nil {
		out, _ := kubectl("describe", "vcert", "-n", "default", issuedCertificate.vcName)
		fmt.Fprintln(os.Stderr, out)
		return showLogOnFailure(err)
	}
	created, err := vault.Latest(issuedCertificate.spec.Name)
	if err != nil {
		return fmt.Errorf("the certificate created from policy is not in the fake vault: %w", err)
	}
	fmt.Printf("    created in the fake vault by vaultcert: %s version %s (create calls: %d), subject %s, SANs %s\n",
		created.Name, created.Version, vault.CountFor(fakevault.OpCreateCertificate, issuedCertificate.spec.Name),
		created.Leaf.Subject, strings.Join(created.Leaf.DNSNames, ", "))
	if err := waitSecretVersion(ctx, k8s, issuedCertificate.secretName, created.Version, timeout); err != nil {
		return showLogOnFailure(err)
	}
	if err := prove(ctx, k8s, issuedCertificate); err != nil {
		return showLogOnFailure(err)
	}

	rotated := demoCertificates[0]
	step("rotating %s in the vault and asking for a refresh", rotated.spec.Name)
	v2, err := vault.Rotate(rotated.spec.Name)
	if err != nil {
		return err
	}
	fmt.Printf("    new version %s\n", v2.Version)
	if out, err := kubectl("annotate", "vcert", "-n", "default", rotated.vcName, "--overwrite",
		fmt.Sprintf("%s=%d", vaultcertv1.AnnotationRefresh, time.Now().Unix())); err != nil {
		return fmt.Errorf("kubectl annotate: %v\n%s", err, out)
	}
	if err := waitSecretVersion(ctx, k8s, rotated.secretName, v2.Version, timeout); err != nil {
		return showLogOnFailure(err)
	}
	if err := prove(ctx, k8s, rotated); err != nil {
		return showLogOnFailure(err)
	}
	out, _ = kubectl("get", "vcert", "-A")
	fmt.Print(out)
	fmt.Printf("\n    Key Vault calls: %s\n", formatCounts(vault.Counts()))

	step("demo passed")
	if keepRunning {
		fmt.Printf("\nStill running. Try:\n  export KUBECONFIG=%s\n  %s/kubectl get vcert -A\n  curl -sk %sadmin/counts\nCtrl-C stops everything.\n",
			kubeconfigPath, os.Getenv("KUBEBUILDER_ASSETS"), vault.URL())
		<-ctx.Done()
	}
	return nil
}

// applySamples applies every manifest in dir; the ClusterVaultConnection's vaultURL and cloud block are pointed at
// the fake vault first (the samples name a real vault).
func applySamples(dir, work string, vault *fakevault.Server, kubectl func(...string) (string, error)) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no samples in %s", dir)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if obj["kind"] == "ClusterVaultConnection" {
			spec := obj["spec"].(map[string]any)
			spec["vaultURL"] = vault.URL()
			// Challenge resource verification stays on: the fake names a challenge resource its host passes.
			// Instance discovery is off, as for any authority that is not Entra ID's own (MSAL would ask
			// login.microsoftonline.com about it).
			spec["cloud"] = map[string]any{
				"authorityHost":            vault.AuthorityHost(),
				"disableInstanceDiscovery": true,
				"caBundle":                 string(vault.CAPEM()),
			}
			if raw, err = yaml.Marshal(obj); err != nil {
				return err
			}
			f = filepath.Join(work, filepath.Base(f))
			if err := os.WriteFile(f, raw, 0o600); err != nil {
				return err
			}
		}
		out, err := kubectl("apply", "--server-side", "--field-manager=demo", "-f", f)
		fmt.Print("    " + out)
		if err != nil {
			return fmt.Errorf("kubectl apply %s: %w", f, err)
		}
	}
	return nil
}

func waitReady(ctx context.Context, k8s client.Client, name string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string) {
		var vc vaultcertv1.VaultCertificate
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, &vc); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		if c == nil {
			return false, name + ": no Ready condition yet"
		}
		return c.Status == metav1.ConditionTrue, fmt.Sprintf("%s: Ready=%s %s: %s", name, c.Status, c.Reason, c.Message)
	})
}

func waitSecretVersion(ctx context.Context, k8s client.Client, name, version string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string) {
		var s corev1.Secret
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, &s); err != nil {
			return false, err.Error()
		}
		have := s.Annotations[vaultcertv1.AnnotationVersion]
		if have == version {
			fmt.Printf("    Secret %s now holds version %s\n", name, version)
		}
		return have == version, fmt.Sprintf("Secret %s holds version %s, want %s", name, have, version)
	})
}

// prove runs a TLS handshake with the Secret's material and prints the verified chain.
func prove(ctx context.Context, k8s client.Client, c demoCertificate) error {
	var s corev1.Secret
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "default", Name: c.secretName}, &s); err != nil {
		return err
	}
	chain, err := tlscheck.Handshake(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], s.Data["ca.crt"], c.dnsName)
	if err != nil {
		return fmt.Errorf("Secret %s: %w", c.secretName, err)
	}
	names := make([]string, len(chain))
	for i, cert := range chain {
		names[i] = cert.Subject.CommonName
	}
	fmt.Printf("    %-9s handshake OK for %-17s verified chain: %s (version %s)\n", c.secretName, c.dnsName,
		strings.Join(names, " <- "), s.Annotations[vaultcertv1.AnnotationVersion])
	return nil
}

func poll(ctx context.Context, timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func describe(s fakevault.CertSpec) string {
	key := fmt.Sprintf("RSA %d", s.KeySize)
	if s.KeyType == "EC" {
		key = "EC " + s.Curve
	}
	format := "PFX"
	if s.ContentType == "application/x-pem-file" {
		format = "PEM"
	}
	order := ""
	if s.ScrambleChain {
		order = ", chain stored out of order"
	}
	return fmt.Sprintf("%s, %d-level chain, stored as %s%s", key, s.ChainDepth, format, order)
}

func formatCounts(counts map[string]int) string {
	var parts []string
	for _, op := range []string{fakevault.OpToken, fakevault.OpChallenge, fakevault.OpGetCertificate, fakevault.OpGetSecret, fakevault.OpListCertificates,
		fakevault.OpCreateCertificate, fakevault.OpGetCertificateOperation} {
		parts = append(parts, fmt.Sprintf("%s=%d", op, counts[op]))
	}
	return strings.Join(parts, " ")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
