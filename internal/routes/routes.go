// Package routes turns what an Ingress or a Gateway listener asks of vaultcert (its vaultcert.io annotations, or
// the same keys in a listener's tls.options) into VaultCertificate specs, and says which hosts a certificate's DNS
// names cover. It is pure: the shims in controllers/ read and write the objects.
package routes

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// Request is what a route asks for: one Key Vault certificate through one connection, with the options that
// matter for serving it.
type Request struct {
	// CertificateName is the certificate's name in Key Vault.
	CertificateName string
	// Version pins a version (from a versioned vaultcert.io/keyvault-uri); empty follows the latest.
	Version string
	// VaultURL is the vault named by vaultcert.io/keyvault-uri (https://host/); empty when the route named the
	// certificate only. The shim checks it is the connection's vault.
	VaultURL string
	// Connection is the connection named by the route; nil means the default ClusterVaultConnection.
	Connection *vaultcertv1.ConnectionReference
	// RefreshInterval, Chain, PrivateKeyEncoding and DeletionPolicy are the optional settings; zero values leave
	// the VaultCertificate's defaults.
	RefreshInterval    *metav1.Duration
	Chain              vaultcertv1.ChainMode
	PrivateKeyEncoding vaultcertv1.PrivateKeyEncoding
	DeletionPolicy     vaultcertv1.DeletionPolicy
}

var (
	certificateNamePattern = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)
	versionPattern         = regexp.MustCompile(`^[0-9a-zA-Z]{1,64}$`)
)

// Bounds of spec.refreshInterval (the CRD enforces the same).
const (
	minRefreshInterval = time.Minute
	maxRefreshInterval = 24 * time.Hour
)

// Parse reads a route's keys. asked is false when the route names no certificate (no
// vaultcert.io/certificate-name or vaultcert.io/keyvault-uri): it asks nothing of vaultcert, and any
// VaultCertificate a shim made for it goes. err names every key that cannot be acted on and why.
func Parse(keys map[string]string) (req Request, asked bool, err error) {
	name, byName := keys[vaultcertv1.AnnotationCertificateName]
	uri, byURI := keys[vaultcertv1.AnnotationKeyVaultURI]
	if !byName && !byURI {
		return Request{}, false, nil
	}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	switch {
	case byName && byURI:
		bad(vaultcertv1.AnnotationKeyVaultURI, "set it or %s, not both", vaultcertv1.AnnotationCertificateName)
	case byURI:
		vault, cert, version, err := ParseKeyVaultURI(uri)
		if err != nil {
			bad(vaultcertv1.AnnotationKeyVaultURI, "%v", err)
		}
		req.VaultURL, req.CertificateName, req.Version = vault, cert, version
	default:
		if !certificateNamePattern.MatchString(name) {
			bad(vaultcertv1.AnnotationCertificateName, "%q is not a Key Vault certificate name (1-127 letters, digits and dashes)", name)
		}
		req.CertificateName = name
	}

	conn, byConn := keys[vaultcertv1.AnnotationConnection]
	cluster, byCluster := keys[vaultcertv1.AnnotationClusterConnection]
	switch {
	case byConn && byCluster:
		bad(vaultcertv1.AnnotationConnection, "set it or %s, not both", vaultcertv1.AnnotationClusterConnection)
	case byConn:
		if msgs := validation.IsDNS1123Subdomain(conn); len(msgs) > 0 {
			bad(vaultcertv1.AnnotationConnection, "%q is not a VaultConnection name: %s", conn, strings.Join(msgs, "; "))
		}
		req.Connection = &vaultcertv1.ConnectionReference{Kind: vaultcertv1.VaultConnectionKind, Name: conn}
	case byCluster:
		if msgs := validation.IsDNS1123Subdomain(cluster); len(msgs) > 0 {
			bad(vaultcertv1.AnnotationClusterConnection, "%q is not a ClusterVaultConnection name: %s", cluster, strings.Join(msgs, "; "))
		}
		req.Connection = &vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: cluster}
	}

	if v, ok := keys[vaultcertv1.AnnotationRefreshInterval]; ok {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			bad(vaultcertv1.AnnotationRefreshInterval, "%q is not a duration like 15m or 1h", v)
		case d < minRefreshInterval || d > maxRefreshInterval:
			bad(vaultcertv1.AnnotationRefreshInterval, "%q must be between %s and %s", v, minRefreshInterval, maxRefreshInterval)
		default:
			req.RefreshInterval = &metav1.Duration{Duration: d}
		}
	}
	oneOf(keys, vaultcertv1.AnnotationChain, &req.Chain, bad,
		vaultcertv1.ChainLeafAndIntermediates, vaultcertv1.ChainFull, vaultcertv1.ChainLeafOnly)
	oneOf(keys, vaultcertv1.AnnotationPrivateKeyEncoding, &req.PrivateKeyEncoding, bad,
		vaultcertv1.PrivateKeyPKCS8, vaultcertv1.PrivateKeyPKCS1)
	oneOf(keys, vaultcertv1.AnnotationDeletionPolicy, &req.DeletionPolicy, bad,
		vaultcertv1.DeletionPolicyDelete, vaultcertv1.DeletionPolicyRetain)
	return req, true, errors.Join(errs...)
}

// oneOf sets *dst to keys[key] when it is one of allowed, and reports it otherwise.
func oneOf[T ~string](keys map[string]string, key string, dst *T, bad func(key, format string, args ...any), allowed ...T) {
	v, ok := keys[key]
	if !ok {
		return
	}
	if !slices.Contains(allowed, T(v)) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = string(a)
		}
		bad(key, "%q is not one of %s", v, strings.Join(names, ", "))
		return
	}
	*dst = T(v)
}

// ParseKeyVaultURI splits https://<vault>/certificates/<name>[/<version>] into the vault's URL (https://host/),
// the certificate's name and its version (empty when none).
func ParseKeyVaultURI(raw string) (vaultURL, name, version string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", "", fmt.Errorf("%q is not a Key Vault certificate URI like https://<vault>.vault.azure.net/certificates/<name>", raw)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "certificates" {
		return "", "", "", fmt.Errorf("%q does not name a certificate: want https://%s/certificates/<name>[/<version>]", raw, u.Host)
	}
	if !certificateNamePattern.MatchString(parts[1]) {
		return "", "", "", fmt.Errorf("%q is not a Key Vault certificate name (1-127 letters, digits and dashes)", parts[1])
	}
	if len(parts) == 3 {
		if !versionPattern.MatchString(parts[2]) {
			return "", "", "", fmt.Errorf("%q is not a Key Vault version (letters and digits)", parts[2])
		}
		version = parts[2]
	}
	return "https://" + u.Host + "/", parts[1], version, nil
}

// SameVault reports whether two vault URLs name one vault: same host (case-insensitive) and port (443 when
// absent). Anything that does not parse as https is no vault.
func SameVault(a, b string) bool {
	ha, okA := vaultHostPort(a)
	hb, okB := vaultHostPort(b)
	return okA && okB && ha == hb
}

func vaultHostPort(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", false
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")), port), true
}

// Defaults of the VaultCertificate fields a route may leave unset (the CRD's defaults): the shim writes them, so
// its spec compares equal to the stored one.
const (
	DefaultRefreshInterval    = time.Hour
	DefaultChain              = vaultcertv1.ChainLeafAndIntermediates
	DefaultPrivateKeyEncoding = vaultcertv1.PrivateKeyPKCS8
	DefaultDeletionPolicy     = vaultcertv1.DeletionPolicyDelete
)

// Spec is the VaultCertificate spec a route's request makes for one Secret, with the CRD's defaults filled in.
func Spec(req Request, conn vaultcertv1.ConnectionReference, secretName string, hosts []string) vaultcertv1.VaultCertificateSpec {
	spec := vaultcertv1.VaultCertificateSpec{
		ConnectionRef:      conn,
		CertificateName:    req.CertificateName,
		Version:            req.Version,
		SecretName:         secretName,
		RefreshInterval:    req.RefreshInterval,
		Chain:              req.Chain,
		PrivateKeyEncoding: req.PrivateKeyEncoding,
		DeletionPolicy:     req.DeletionPolicy,
		Hosts:              hosts,
	}
	if spec.RefreshInterval == nil {
		spec.RefreshInterval = &metav1.Duration{Duration: DefaultRefreshInterval}
	}
	if spec.Chain == "" {
		spec.Chain = DefaultChain
	}
	if spec.PrivateKeyEncoding == "" {
		spec.PrivateKeyEncoding = DefaultPrivateKeyEncoding
	}
	if spec.DeletionPolicy == "" {
		spec.DeletionPolicy = DefaultDeletionPolicy
	}
	if len(spec.Hosts) == 0 {
		spec.Hosts = nil
	}
	return spec
}

// IngressHosts maps each spec.tls[].secretName of an Ingress to the hosts served with it, sorted and without
// duplicates: the entry's hosts, or every rule host when the entry lists none (the Ingress then serves that
// Secret for all of them).
func IngressHosts(ing *networkingv1.Ingress) map[string][]string {
	var ruleHosts []string
	for _, rule := range ing.Spec.Rules {
		if rule.Host != "" {
			ruleHosts = append(ruleHosts, rule.Host)
		}
	}
	bySecret := map[string][]string{}
	for _, tls := range ing.Spec.TLS {
		if tls.SecretName == "" {
			continue // the ingress controller's default certificate: nothing to sync
		}
		hosts := tls.Hosts
		if len(hosts) == 0 {
			hosts = ruleHosts
		}
		bySecret[tls.SecretName] = append(bySecret[tls.SecretName], hosts...)
	}
	for secret, hosts := range bySecret {
		bySecret[secret] = SortedHosts(hosts)
	}
	return bySecret
}

// SortedHosts lower-cases hosts, drops trailing dots, empty names and duplicates, and sorts them.
func SortedHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if h = normalHost(h); h != "" {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Uncovered returns the hosts no DNS name covers, in order. A DNS name covers a host equal to it, or, as
// "*.<domain>", a host of exactly one more label than domain (RFC 6125 6.4.3, wildcard as the whole leftmost
// label, as Go's crypto/x509 and browsers accept it). A wildcard host (a Gateway listener's "*.example.com") is
// covered only by the same wildcard.
func Uncovered(hosts, dnsNames []string) []string {
	var out []string
	for _, h := range hosts {
		if !slices.ContainsFunc(dnsNames, func(name string) bool { return covers(name, h) }) {
			out = append(out, h)
		}
	}
	return out
}

func covers(name, host string) bool {
	name, host = normalHost(name), normalHost(host)
	if name == "" || host == "" {
		return false
	}
	if name == host {
		return true
	}
	domain, ok := strings.CutPrefix(name, "*.")
	if !ok || strings.HasPrefix(host, "*.") || strings.Contains(domain, "*") {
		return false
	}
	label, rest, found := strings.Cut(host, ".")
	return found && label != "" && rest == domain
}

func normalHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}
