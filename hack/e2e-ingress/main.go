// Command e2e-ingress proves that a real ingress controller serves the Secret vaultcert writes for an annotated
// Ingress, on one machine and with nothing from Azure: a real kube-apiserver and etcd (envtest), the project's fake
// Key Vault, the real vaultcert binary, and a real Traefik (hack/traefik.sh builds it) with its Kubernetes Ingress
// provider, in front of a plain HTTP backend the harness runs.
//
// It seeds a certificate with a chain (leaf, intermediate, root) in the fake vault, creates a ClusterVaultConnection
// to it, a Service with an EndpointSlice for the backend, and an Ingress of class traefik whose spec.tls names
// Secret app-tls and whose vaultcert.io annotations name the Key Vault certificate. vaultcert's ingress shim creates
// VaultCertificate app-tls for it (with -create-vaultcertificate the harness creates it instead, for a vaultcert
// without the shim), and vaultcert writes the Secret. Unless -gateway=false, the same is done through the Gateway
// API: Traefik's Gateway provider, a Gateway whose HTTPS listener names Secret gw-tls and carries the keys in its
// tls.options (vaultcert's Gateway shim), and an HTTPRoute. Then, for each route, it asserts (failing with a
// non-zero exit):
//
//   - a TLS handshake with Traefik for the route's SNI verifies against the Secret's ca.crt and the host name;
//   - Traefik serves the leaf then the intermediate: exactly the Secret's tls.crt, and the vault's latest version;
//   - an HTTPS GET through Traefik returns the backend's answer;
//   - after a rotation in the vault and a vaultcert.io/refresh annotation on the VaultCertificate, Traefik serves
//     the new leaf; the seconds from the rotation to that are measured (handshakes every 100 ms).
//
// It prints how long each step took and exits 0. Every process it started is stopped on exit and on Ctrl-C.
//
//	go build -o bin/vaultcert . && KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) \
//	  go run ./hack/e2e-ingress -traefik $(hack/traefik.sh)
package main

import (
	"context"
	"crypto/x509"
	"errors"
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/hack/internal/localcluster"
	"github.com/vaultcert/vaultcert/internal/fakevault"
	"github.com/vaultcert/vaultcert/internal/hostpolicy"
)

// options are the command's flags.
type options struct {
	binary   string
	traefik  string
	createVC bool
	gateway  bool
	keep     bool
	timeout  time.Duration
	rotation time.Duration
	throttle string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/vaultcert", "The vaultcert binary to run (go build -o bin/vaultcert .).")
	flag.StringVar(&o.traefik, "traefik", "", "The Traefik binary to run (hack/traefik.sh prints it, building it the first time).")
	flag.BoolVar(&o.createVC, "create-vaultcertificate", false,
		"Create each route's VaultCertificate in the harness, as vaultcert's shims would (for a vaultcert without them).")
	flag.BoolVar(&o.gateway, "gateway", true, "Also prove the Gateway API path (Traefik's Gateway provider, vaultcert's Gateway shim).")
	flag.BoolVar(&o.keep, "keep", false, "After passing, keep everything running until Ctrl-C.")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "How long to wait for each step.")
	flag.DurationVar(&o.rotation, "rotation-timeout", 3*time.Minute, "How long Traefik may take to serve a rotated certificate.")
	flag.StringVar(&o.throttle, "providers-throttle", "",
		"Traefik's --providers.providersThrottleDuration, a Go duration (empty: Traefik's default, 2s).")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "\ne2e-ingress FAILED:", err)
		os.Exit(1)
	}
}

// route is one way the backend is published through Traefik: the Ingress or the Gateway, each with its own host
// name, Key Vault certificate, Secret (and VaultCertificate of the same name) and Traefik entry point.
type route struct {
	kind, name, host, certName, secretName string
	// addr is Traefik's entry point for the route.
	addr string
	// obj is the Ingress or Gateway once created (a shim's VaultCertificate must be controlled by it).
	obj client.Object
	// version is the vault's version the route should serve; roots trusts the Secret's ca.crt.
	version fakevault.Version
	roots   *x509.CertPool
	// secretAt and servedAt report when the Secret first held version and when Traefik first served its leaf.
	secretAt, servedAt <-chan time.Time
	// start is when the current wait began (the route's creation, then the rotation).
	start time.Time
}

// String names the route in messages, e.g. "Ingress app".
func (r *route) String() string { return r.kind + " " + r.name }

// step announces a step.
func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

// timeline is how long each step took, for the summary.
type timeline []struct {
	name string
	d    time.Duration
}

// add records a step that started at start, and returns its duration.
func (t *timeline) add(name string, start time.Time) time.Duration {
	d := time.Since(start)
	t.record(name, d)
	return d
}

// record records a step that took d.
func (t *timeline) record(name string, d time.Duration) {
	*t = append(*t, struct {
		name string
		d    time.Duration
	}{name, d})
	fmt.Printf("    (%s: %.2f s)\n", name, d.Seconds())
}

func run(o options) error {
	began := time.Now()
	if _, err := os.Stat(o.binary); err != nil {
		return fmt.Errorf("%s: %w (build it: go build -o bin/vaultcert .)", o.binary, err)
	}
	if o.traefik == "" {
		return errors.New("no Traefik binary: pass -traefik $(hack/traefik.sh)")
	}
	if _, err := os.Stat(o.traefik); err != nil {
		return fmt.Errorf("-traefik %s: %w", o.traefik, err)
	}
	throttle := 2 * time.Second // Traefik's default providersThrottleDuration
	if o.throttle != "" {
		var err error
		if throttle, err = time.ParseDuration(o.throttle); err != nil {
			return fmt.Errorf("-providers-throttle: %w", err)
		}
	}
	routes := []*route{ingressRoute}
	if o.gateway {
		routes = append(routes, gatewayRoute)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "vaultcert-e2e-ingress-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var times timeline

	step("starting a local control plane (kube-apiserver + etcd) with vaultcert's CRDs")
	t := time.Now()
	cluster, err := localcluster.Start(work, "e2e-admin", 0, 0)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()
	k8s, err := newClient(cluster.Config)
	if err != nil {
		return err
	}
	if o.gateway {
		paths, err := gatewayCRDs()
		if err != nil {
			return err
		}
		if _, err := envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true}); err != nil {
			return fmt.Errorf("installing the Gateway API CRDs: %w", err)
		}
		fmt.Printf("    Gateway API CRDs from %s\n", filepath.Dir(paths[0]))
	}
	times.add("control plane", t)

	step("starting the fake Key Vault: RSA 2048 certificates with leaf <- intermediate <- root")
	t = time.Now()
	vault, err := fakevault.Start(fakevault.Options{})
	if err != nil {
		return err
	}
	defer vault.Close()
	vault.AddClientSecret(e2eClientID, e2eClientSecret)
	for _, r := range routes {
		// ChainDepth 3 is root -> intermediate -> leaf: tls.crt gets leaf and intermediate, ca.crt the root.
		if r.version, err = vault.Seed(fakevault.CertSpec{Name: r.certName, KeyType: "RSA", KeySize: 2048, ChainDepth: 3,
			DNSNames: []string{r.host}}); err != nil {
			return err
		}
		fmt.Printf("    %s version %s: %s\n", r.certName, r.version.Version, subjects(r.version.Chain))
	}
	fmt.Printf("    vault %s\n", vault.URL())
	times.add("fake vault and seed", t)

	step("starting the backend and creating the connection, classes, Service and EndpointSlice")
	t = time.Now()
	be, err := startBackend()
	if err != nil {
		return err
	}
	defer be.close()
	fmt.Printf("    backend http://%s answers %q\n", be.addr, backendBody)
	if err := createBase(ctx, k8s, vault, be.addr, o.gateway); err != nil {
		return err
	}
	token, err := traefikRBAC(ctx, k8s, o.gateway)
	if err != nil {
		return err
	}
	times.add("cluster objects", t)

	step("starting the vaultcert binary (%s)", o.binary)
	t = time.Now()
	// The fake vault is no Azure host: an admin allows it explicitly, as for a private vault.
	args := []string{"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		hostpolicy.FlagVaultDomains + "=" + strings.Join(append(hostpolicy.DefaultVaultDomains, vault.URL()), ","),
		hostpolicy.FlagAuthorityHosts + "=" + strings.Join(append(hostpolicy.DefaultAuthorityHosts, vault.AuthorityHost()), ","),
	}
	if o.createVC {
		// The harness plays the shims: a binary that has them must not race it to the same VaultCertificates.
		help, _ := exec.Command(o.binary, "--help").CombinedOutput()
		for _, shim := range []string{"ingress-shim", "gateway-shim"} {
			if strings.Contains(string(help), "-"+shim) {
				args = append(args, "--"+shim+"=false")
			}
		}
	}
	fmt.Printf("    allowed: vault %s, authority %s; %s\n", vault.URL(), vault.AuthorityHost(), strings.Join(args[:3], " "))
	if len(args) > 5 {
		fmt.Printf("    %s (-create-vaultcertificate)\n", strings.Join(args[5:], " "))
	}
	controller, err := startProcess("vaultcert", o.binary, args, []string{"KUBECONFIG=" + cluster.KubeconfigPath}, nil,
		filepath.Join(work, "vaultcert.log"))
	if err != nil {
		return fmt.Errorf("%w (build it: go build -o bin/vaultcert .)", err)
	}
	defer controller.stop()

	step("starting Traefik (%s)", o.traefik)
	tr, err := startTraefik(traefikOptions{binary: o.traefik, apiServer: cluster.Config.Host, caPEM: cluster.Config.CAData,
		token: token, throttle: o.throttle, gateway: o.gateway, work: work})
	if err != nil {
		return err
	}
	defer tr.stop()
	ingressRoute.addr, gatewayRoute.addr = tr.websecure, tr.gateway
	fmt.Printf("    entry points: websecure (Ingress) https://%s", tr.websecure)
	if o.gateway {
		fmt.Printf(", gateway https://%s", tr.gateway)
	}
	fmt.Printf("; ping http://%s/ping; as ServiceAccount %s/traefik\n", tr.ping, traefikNamespace)
	// Past this point a failure shows what the processes and the objects said.
	fail := func(err error) error {
		diagnose(k8s, controller, tr, routes)
		return err
	}
	if err := tr.waitPing(ctx, o.timeout); err != nil {
		return fail(err)
	}
	times.add("vaultcert and Traefik started", t)

	step("creating the routes")
	for _, r := range routes {
		r.start = time.Now()
		var objs []client.Object
		switch r.kind {
		case "Ingress":
			r.obj = newIngress(r)
			objs = []client.Object{r.obj}
			fmt.Printf("    Ingress %s/%s: class %s, host %s, spec.tls secretName %s, annotations %v\n",
				appNamespace, r.name, traefikClass, r.host, r.secretName, vaultcertKeys(r))
		case "Gateway":
			r.obj = newGateway(r, portNumber(r.addr))
			objs = []client.Object{r.obj, newHTTPRoute(r)}
			fmt.Printf("    Gateway %s/%s: class %s, HTTPS listener %s port %d, certificateRefs %s, tls.options %v; HTTPRoute %s\n",
				appNamespace, r.name, traefikClass, r.host, portNumber(r.addr), r.secretName, vaultcertKeys(r), r.name)
		}
		if err := create(ctx, k8s, objs...); err != nil {
			return fail(err)
		}
		// Both are timed from here, while the harness waits for the VaultCertificate.
		r.secretAt, r.servedAt = watchSecretVersion(ctx, k8s, r), watchLeaf(ctx, r)
		if o.createVC {
			vc, err := newVaultCertificate(r)
			if err != nil {
				return err
			}
			fmt.Printf("    -create-vaultcertificate: creating VaultCertificate %s/%s as the %s shim would\n", vc.Namespace, vc.Name, r.kind)
			if err := k8s.Create(ctx, vc); err != nil {
				return fail(err)
			}
		}
	}

	for _, r := range routes {
		step("%s: VaultCertificate, Secret %s, and Traefik serving it for SNI %s", r, r.secretName, r.host)
		if !o.createVC {
			if err := waitShim(ctx, k8s, r, controller, o.timeout); err != nil {
				return fail(err)
			}
		}
		if err := waitReady(ctx, k8s, r, controller, o.timeout); err != nil {
			return fail(err)
		}
		secret, err := checkSecret(ctx, k8s, r)
		if err != nil {
			return fail(err)
		}
		secretIn, err := received(r.secretAt, r.start, "Secret "+r.secretName+" with version "+r.version.Version)
		if err != nil {
			return fail(err)
		}
		times.record(r.kind+": created to Secret written", secretIn)
		r.roots = x509.NewCertPool()
		r.roots.AddCert(secret.root)
		if err := waitServed(ctx, tr, r, o.timeout); err != nil {
			return fail(err)
		}
		servedIn, err := received(r.servedAt, r.start, "Traefik serving version "+r.version.Version)
		if err != nil {
			return fail(err)
		}
		times.record(r.kind+": created to Secret served by Traefik", servedIn)
		fmt.Printf("    Secret written -> Traefik serves it: %.2f s\n", (servedIn - secretIn).Seconds())
		if err := checkServed(ctx, r, secret); err != nil {
			return fail(err)
		}
		if err := checkGet(ctx, r); err != nil {
			return fail(err)
		}
		if r.kind == "Gateway" {
			if err := waitGatewayStatus(ctx, k8s, r, tr, o.timeout); err != nil {
				return fail(err)
			}
		}
	}

	// Traefik forwards a provider's configuration at once and then holds the next one back for the providers
	// throttle: a rotation right after the Secret's first appearance would wait out the rest of that window. A
	// rotation normally comes long after any other change, so the harness lets the window pass first.
	quiet := throttle + 500*time.Millisecond
	step("rotating the certificates in the fake vault (after %s without changes) and annotating their VaultCertificates with %s",
		quiet, vaultcertv1.AnnotationRefresh)
	select {
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(quiet):
	}
	for _, r := range routes {
		if r.version, err = vault.Rotate(r.certName); err != nil {
			return fail(err)
		}
		r.start = time.Now()
		r.secretAt, r.servedAt = watchSecretVersion(ctx, k8s, r), watchLeaf(ctx, r)
		vc := &vaultcertv1.VaultCertificate{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: r.secretName}}
		if err := k8s.Patch(ctx, vc, refreshPatch(r.start.Unix())); err != nil {
			return fail(fmt.Errorf("annotating VaultCertificate %s: %w", r.secretName, err))
		}
		fmt.Printf("    %s: new version %s (leaf serial %s)\n", r.certName, r.version.Version, r.version.Leaf.SerialNumber)
	}
	rotationServed := map[*route]time.Duration{}
	for _, r := range routes {
		step("%s: Traefik serving the new version for SNI %s", r, r.host)
		if err := waitServed(ctx, tr, r, o.rotation); err != nil {
			return fail(fmt.Errorf("after the rotation: %w", err))
		}
		servedIn, err := received(r.servedAt, r.start, "Traefik serving version "+r.version.Version)
		if err != nil {
			return fail(err)
		}
		// The watcher polls every 100 ms, so it may see the Secret a moment after Traefik served it.
		secretIn, err := received(r.secretAt, r.start, "Secret "+r.secretName+" with version "+r.version.Version)
		if err != nil {
			return fail(err)
		}
		times.record(r.kind+": rotation to Secret written", secretIn)
		times.record(r.kind+": rotation to new leaf served by Traefik", servedIn)
		rotationServed[r] = servedIn
		fmt.Printf("    Secret written -> Traefik serves it: %.2f s\n", (servedIn - secretIn).Seconds())
		secret, err := checkSecret(ctx, k8s, r)
		if err != nil {
			return fail(err)
		}
		if err := checkServed(ctx, r, secret); err != nil {
			return fail(err)
		}
		if err := checkGet(ctx, r); err != nil {
			return fail(err)
		}
	}

	step("e2e-ingress passed")
	mode := "vaultcert's shims created the VaultCertificates"
	if o.createVC {
		mode = "the harness created the VaultCertificates (-create-vaultcertificate)"
	}
	fmt.Printf("    %s; the backend answered %d requests through Traefik\n", mode, be.requests.Load())
	for _, s := range times {
		fmt.Printf("    %-50s %7.2f s\n", s.name, s.d.Seconds())
	}
	fmt.Printf("    %-50s %7.2f s\n", "total", time.Since(began).Seconds())
	for _, r := range routes {
		fmt.Printf("    %s: rotation to new leaf served: %.2f s (Traefik's providers throttle %s; a change of the same provider up to %[3]s before would add the rest of that window)\n",
			r, rotationServed[r].Seconds(), throttle)
	}

	if o.keep {
		fmt.Printf("\nStill running. Try:\n  export KUBECONFIG=%s\n  %s get vcert,secret,ingress -n %s\n",
			cluster.KubeconfigPath, localcluster.Kubectl(), appNamespace)
		for _, r := range routes {
			port := portNumber(r.addr)
			fmt.Printf("  curl -s --cacert <(%s get secret -n %s %s -o jsonpath='{.data.ca\\.crt}' | base64 -d) --resolve %s:%d:127.0.0.1 https://%[4]s:%[5]d/\n",
				localcluster.Kubectl(), appNamespace, r.secretName, r.host, port)
		}
		fmt.Printf("Ctrl-C stops everything.\n")
		<-ctx.Done()
	}
	return nil
}

// waitShim waits for the shim's VaultCertificate for the route (named after the Secret, in the route's
// namespace) and checks it against the contract.
func waitShim(ctx context.Context, k8s client.Client, r *route, controller *process, timeout time.Duration) error {
	var vc vaultcertv1.VaultCertificate
	err := poll(ctx, timeout, 200*time.Millisecond, controller.alive, func() (bool, string) {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, &vc)
		if apierrors.IsNotFound(err) {
			return false, "no VaultCertificate " + r.secretName
		}
		return err == nil, fmt.Sprint(err)
	})
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("the %s shim created no VaultCertificate %s/%s for %s within %s (a vaultcert without the shim needs -create-vaultcertificate): %w",
			r.kind, appNamespace, r.secretName, r, timeout, err)
	}
	if err != nil {
		return err
	}
	if err := checkShimContract(&vc, r, r.obj); err != nil {
		return err
	}
	fmt.Printf("    the %s shim created VaultCertificate %s/%s, controlled by %s\n", r.kind, vc.Namespace, vc.Name, r)
	return nil
}

// waitReady waits for the route's VaultCertificate to be Ready. A shim's VaultCertificate lists the route's hosts
// and says whether the certificate covers them (HostsCovered): the handshakes verify the host name, so anything
// but True there is a wrong report.
func waitReady(ctx context.Context, k8s client.Client, r *route, controller *process, timeout time.Duration) error {
	var vc vaultcertv1.VaultCertificate
	if err := poll(ctx, timeout, 200*time.Millisecond, controller.alive, func() (bool, string) {
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, &vc); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionReady)
		if c == nil {
			return false, "VaultCertificate " + r.secretName + ": no Ready condition yet"
		}
		if c.Status == metav1.ConditionTrue {
			fmt.Printf("    VaultCertificate %s Ready: %s (version %s)\n", r.secretName, c.Reason, vc.Status.Version)
		}
		return c.Status == metav1.ConditionTrue, fmt.Sprintf("VaultCertificate %s: Ready=%s %s: %s", r.secretName, c.Status, c.Reason, c.Message)
	}); err != nil {
		return err
	}
	if c := meta.FindStatusCondition(vc.Status.Conditions, vaultcertv1.ConditionHostsCovered); c != nil {
		if c.Status != metav1.ConditionTrue {
			return fmt.Errorf("VaultCertificate %s: HostsCovered=%s %s: %s, but the certificate's DNS names are %v and the route's host is %s",
				r.secretName, c.Status, c.Reason, c.Message, r.version.Leaf.DNSNames, r.host)
		}
		fmt.Printf("    VaultCertificate %s HostsCovered: %s\n", r.secretName, c.Message)
	}
	return nil
}

// waitGatewayStatus waits for Traefik to report the Gateway's listener Programmed with its references resolved:
// Traefik's own account that it took the Secret, next to the handshakes that prove it.
func waitGatewayStatus(ctx context.Context, k8s client.Client, r *route, tr *traefik, timeout time.Duration) error {
	return poll(ctx, timeout, 200*time.Millisecond, tr.alive, func() (bool, string) {
		var gw gatewayv1.Gateway
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.name}, &gw); err != nil {
			return false, err.Error()
		}
		if len(gw.Status.Listeners) != 1 {
			return false, fmt.Sprintf("Gateway %s: status lists %d listeners, want 1", r.name, len(gw.Status.Listeners))
		}
		var states []string
		ok := true
		for _, t := range []gatewayv1.ListenerConditionType{gatewayv1.ListenerConditionResolvedRefs, gatewayv1.ListenerConditionProgrammed} {
			c := meta.FindStatusCondition(gw.Status.Listeners[0].Conditions, string(t))
			if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gw.Generation {
				ok = false
			}
			if c == nil {
				states = append(states, string(t)+" not set")
			} else {
				states = append(states, fmt.Sprintf("%s=%s (%s)", t, c.Status, c.Message))
			}
		}
		if ok {
			fmt.Printf("    Traefik reports the listener: %s\n", strings.Join(states, ", "))
		}
		return ok, "Gateway " + r.name + " listener: " + strings.Join(states, ", ")
	})
}

// tlsSecret is what the Secret holds, parsed.
type tlsSecret struct {
	chain []*x509.Certificate
	root  *x509.Certificate
}

// checkSecret reads the route's Secret and checks it holds the route's version: tls.crt is the vault's leaf and
// intermediate in that order, ca.crt its root.
func checkSecret(ctx context.Context, k8s client.Client, r *route) (tlsSecret, error) {
	v := r.version
	var s corev1.Secret
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, &s); err != nil {
		return tlsSecret{}, fmt.Errorf("Secret %s: %w", r.secretName, err)
	}
	if have := s.Annotations[vaultcertv1.AnnotationVersion]; have != v.Version {
		return tlsSecret{}, fmt.Errorf("Secret %s holds version %q, want %s", r.secretName, have, v.Version)
	}
	if s.Type != corev1.SecretTypeTLS {
		return tlsSecret{}, fmt.Errorf("Secret %s has type %s, want %s", r.secretName, s.Type, corev1.SecretTypeTLS)
	}
	chain, err := parseCertificates(s.Data[corev1.TLSCertKey])
	if err != nil {
		return tlsSecret{}, fmt.Errorf("Secret %s tls.crt: %w", r.secretName, err)
	}
	ca, err := parseCertificates(s.Data["ca.crt"])
	if err != nil {
		return tlsSecret{}, fmt.Errorf("Secret %s ca.crt: %w", r.secretName, err)
	}
	if err := sameChain("Secret "+r.secretName+" tls.crt against the vault's leaf and intermediate", chain, v.Chain[:2]); err != nil {
		return tlsSecret{}, err
	}
	if err := sameChain("Secret "+r.secretName+" ca.crt against the vault's root", ca, v.Chain[2:]); err != nil {
		return tlsSecret{}, err
	}
	return tlsSecret{chain: chain, root: ca[0]}, nil
}

// waitServed polls handshakes with Traefik every 100 ms until it serves the route's version's leaf and the chain
// verifies against the Secret's ca.crt for the host name.
func waitServed(ctx context.Context, tr *traefik, r *route, timeout time.Duration) error {
	v := r.version
	var last served
	err := poll(ctx, timeout, 100*time.Millisecond, tr.alive, func() (bool, string) {
		s, err := handshake(ctx, r.addr, r.host, r.roots)
		if err != nil {
			return false, "TLS handshake with Traefik: " + err.Error()
		}
		last = s
		if !s.chain[0].Equal(v.Leaf) {
			return false, fmt.Sprintf("Traefik serves %s for SNI %s, want version %s's leaf (serial %s)", s.leafName(), r.host, v.Version, v.Leaf.SerialNumber)
		}
		if s.verifyErr != nil {
			return false, fmt.Sprintf("Traefik serves version %s's leaf, but the chain does not verify against ca.crt for %s: %v", v.Version, r.host, s.verifyErr)
		}
		return true, ""
	})
	if err == nil {
		fmt.Printf("    Traefik serves %s, verified against ca.crt for %s\n", subjects(last.chain), r.host)
	}
	return err
}

// checkServed asserts the served chain is, certificate for certificate and in order, the Secret's tls.crt and the
// vault's leaf and intermediate of the route's version, and that it verifies.
func checkServed(ctx context.Context, r *route, secret tlsSecret) error {
	s, err := handshake(ctx, r.addr, r.host, r.roots)
	if err != nil {
		return fmt.Errorf("TLS handshake with Traefik: %w", err)
	}
	if s.verifyErr != nil {
		return fmt.Errorf("the chain Traefik serves does not verify against ca.crt for %s: %w", r.host, s.verifyErr)
	}
	if err := sameChain("Traefik's chain against Secret "+r.secretName+" tls.crt", s.chain, secret.chain); err != nil {
		return err
	}
	if err := sameChain("Traefik's chain against the vault's leaf and intermediate (version "+r.version.Version+")", s.chain, r.version.Chain[:2]); err != nil {
		return err
	}
	fmt.Printf("    served chain = Secret tls.crt = vault version %s: %s (leaf, then intermediate)\n", r.version.Version, subjects(s.chain))
	return nil
}

// checkGet asserts an HTTPS GET for the route's host through Traefik reaches the backend.
func checkGet(ctx context.Context, r *route) error {
	body, err := httpsGet(ctx, r.addr, r.host, r.roots)
	if err != nil {
		return fmt.Errorf("HTTPS GET https://%s/ through Traefik: %w", r.host, err)
	}
	if body != backendBody {
		return fmt.Errorf("HTTPS GET https://%s/ through Traefik returned %q, want the backend's %q", r.host, body, backendBody)
	}
	fmt.Printf("    GET https://%s/ (verified against ca.crt): %q\n", r.host, body)
	return nil
}

// received is how long after start a watcher saw what it watches for; it waits a few seconds at most, as the
// caller has already seen the outcome by other means.
func received(at <-chan time.Time, start time.Time, what string) (time.Duration, error) {
	select {
	case t := <-at:
		return t.Sub(start), nil
	case <-time.After(5 * time.Second):
		return 0, errors.New("the watcher never saw " + what)
	}
}

// watchLeaf polls handshakes with Traefik every 100 ms and sends the time it first serves the leaf of the route's
// current version for its host name (verification is asserted separately, by waitServed and checkServed).
func watchLeaf(ctx context.Context, r *route) <-chan time.Time {
	at, addr, host, leaf := make(chan time.Time, 1), r.addr, r.host, r.version.Leaf
	go func() {
		for ctx.Err() == nil {
			if s, err := handshake(ctx, addr, host, nil); err == nil && s.chain[0].Equal(leaf) {
				at <- time.Now()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return at
}

// watchSecretVersion polls the route's Secret every 100 ms and sends the time it first holds the route's current
// version.
func watchSecretVersion(ctx context.Context, k8s client.Client, r *route) <-chan time.Time {
	at, key, version := make(chan time.Time, 1), types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, r.version.Version
	go func() {
		for ctx.Err() == nil {
			var s corev1.Secret
			if err := k8s.Get(ctx, key, &s); err == nil && s.Annotations[vaultcertv1.AnnotationVersion] == version {
				at <- time.Now()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return at
}

// diagnose prints what vaultcert and Traefik logged and the state of the objects, after a failure. It uses a
// fresh context: the run's may be what was cancelled.
func diagnose(k8s client.Client, controller *process, tr *traefik, routes []*route) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Fprintf(os.Stderr, "\n--- vaultcert log (%s) ---\n%s\n", controller.logPath, controller.tail(40, "ERROR", "error"))
	fmt.Fprintf(os.Stderr, "\n--- Traefik log (%s) ---\n%s\n", tr.logPath, tr.tail(40, " ERR ", " WRN "))
	fmt.Fprintf(os.Stderr, "\n--- Traefik flags ---\n%s\n", strings.Join(tr.args, " "))
	for _, r := range routes {
		var vc vaultcertv1.VaultCertificate
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, &vc); err != nil {
			fmt.Fprintf(os.Stderr, "\nVaultCertificate %s: %v\n", r.secretName, err)
		} else {
			fmt.Fprintf(os.Stderr, "\nVaultCertificate %s: version %q, owners %v\n", r.secretName, vc.Status.Version, vc.OwnerReferences)
			for _, c := range vc.Status.Conditions {
				fmt.Fprintf(os.Stderr, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
			}
		}
		var s corev1.Secret
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.secretName}, &s); err != nil {
			fmt.Fprintf(os.Stderr, "Secret %s: %v\n", r.secretName, err)
		} else {
			fmt.Fprintf(os.Stderr, "Secret %s: type %s, annotations %v\n", r.secretName, s.Type, s.Annotations)
		}
		if r.kind == "Gateway" {
			var gw gatewayv1.Gateway
			if err := k8s.Get(ctx, types.NamespacedName{Namespace: appNamespace, Name: r.name}, &gw); err != nil {
				fmt.Fprintf(os.Stderr, "Gateway %s: %v\n", r.name, err)
			}
			for _, l := range gw.Status.Listeners {
				for _, c := range l.Conditions {
					fmt.Fprintf(os.Stderr, "  Gateway %s listener %s: %s=%s %s: %s\n", r.name, l.Name, c.Type, c.Status, c.Reason, c.Message)
				}
			}
		}
	}
}

// portNumber is the port of a 127.0.0.1:port address.
func portNumber(addr string) int {
	var port int
	_, _ = fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port)
	return port
}
