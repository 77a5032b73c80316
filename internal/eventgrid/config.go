package eventgrid

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// Config is the webhook's command-line configuration (main.go binds it; Helm's eventGrid values set it).
type Config struct {
	// Addr is the listen address; empty turns the webhook off.
	Addr string
	// CertDir holds tls.crt and tls.key; empty serves plain HTTP (TLS terminated in front).
	CertDir string
	// SecretsFile holds the accepted shared secrets, one a line (a mounted Secret).
	SecretsFile string
	// SecretHeader and SecretQueryParameter say where a secret may travel.
	SecretHeader, SecretQueryParameter string
	// EntraTenantID and EntraAudiences turn on Entra ID tokens; EntraAuthorityHost is Entra's URL.
	EntraTenantID, EntraAudiences, EntraAuthorityHost string
	// EntraAllowedAppIDs restricts the token's caller (comma-separated; "" accepts any).
	EntraAllowedAppIDs string
	// EntraIssuers overrides the accepted issuers (national clouds); EntraRequiredRole is an app role the token
	// must carry.
	EntraIssuers, EntraRequiredRole string
	// RatePerSecond and Burst limit deliveries.
	RatePerSecond float64
	Burst         int
	// HandshakeWithoutAuth answers validation handshakes without authentication.
	HandshakeWithoutAuth bool
}

// AddFlags binds c to fs.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "eventgrid-bind-address", "", "Address of the Azure Event Grid webhook for Key Vault certificate events (e.g. :9443); empty turns it off. Needs --vault-listing.")
	fs.StringVar(&c.CertDir, "eventgrid-cert-dir", "", "Directory with tls.crt and tls.key for the webhook's HTTPS; empty serves HTTP for a TLS-terminating Ingress in front.")
	fs.StringVar(&c.SecretsFile, "eventgrid-secrets-file", "", "File of accepted shared secrets, one per line (a mounted Secret).")
	fs.StringVar(&c.SecretHeader, "eventgrid-secret-header", DefaultSecretHeader, "Header that may carry a shared secret (\"Authorization: Bearer <secret>\", or a delivery attribute's header).")
	fs.StringVar(&c.SecretQueryParameter, "eventgrid-secret-query-parameter", DefaultSecretQueryParameter, "Query-string parameter that may carry a shared secret.")
	fs.StringVar(&c.EntraTenantID, "eventgrid-entra-tenant-id", "", "Accept Microsoft Entra ID tokens of this tenant (Event Grid's secure webhook delivery).")
	fs.StringVar(&c.EntraAudiences, "eventgrid-entra-audiences", "", "Comma-separated accepted token audiences (the application ID URI and/or client ID given to Event Grid).")
	fs.StringVar(&c.EntraAuthorityHost, "eventgrid-entra-authority-host", DefaultAuthorityHost, "Entra ID's URL, the only host the webhook fetches signing keys from.")
	fs.StringVar(&c.EntraAllowedAppIDs, "eventgrid-entra-allowed-app-ids", EventGridAppID, "Comma-separated callers (azp/appid) accepted; empty accepts any the audience lets in.")
	fs.StringVar(&c.EntraIssuers, "eventgrid-entra-issuers", "", "Comma-separated accepted token issuers; empty accepts the tenant's v2 issuer and https://sts.windows.net/<tenant>/ (set it for national clouds).")
	fs.StringVar(&c.EntraRequiredRole, "eventgrid-entra-required-role", "", "An app role the token must carry (e.g. AzureEventGridSecureWebhookSubscriber); empty requires none.")
	fs.Float64Var(&c.RatePerSecond, "eventgrid-rate", DefaultRatePerSecond, "Deliveries per second accepted after authentication (429 beyond, which Event Grid retries).")
	fs.IntVar(&c.Burst, "eventgrid-burst", DefaultBurst, "Deliveries accepted at once above the rate.")
	fs.BoolVar(&c.HandshakeWithoutAuth, "eventgrid-handshake-without-auth", false, "Answer the validation handshakes without authentication (deliveries still need it).")
}

// Server builds the webhook's server, or nil when Addr is empty.
func (c *Config) Server(notify func(Notification), log logr.Logger) (*Server, error) {
	if c.Addr == "" {
		return nil, nil
	}
	opts := Options{Notify: notify, SecretHeader: c.SecretHeader, SecretQueryParameter: c.SecretQueryParameter,
		RatePerSecond: c.RatePerSecond, Burst: c.Burst, HandshakeWithoutAuth: c.HandshakeWithoutAuth, Log: log}
	if c.SecretsFile != "" {
		secrets, err := readSecrets(c.SecretsFile)
		if err != nil {
			return nil, err
		}
		opts.Secrets = secrets
	}
	if c.EntraTenantID != "" {
		authority, err := url.Parse(c.EntraAuthorityHost)
		if err != nil || authority.Scheme != "https" || authority.Host == "" {
			return nil, fmt.Errorf("--eventgrid-entra-authority-host %q: want an https URL", c.EntraAuthorityHost)
		}
		opts.Entra = &EntraOptions{TenantID: c.EntraTenantID, Audiences: list(c.EntraAudiences), AuthorityHost: c.EntraAuthorityHost,
			AllowedAppIDs: list(c.EntraAllowedAppIDs), Issuers: list(c.EntraIssuers), RequiredRole: c.EntraRequiredRole,
			HTTPClient: onlyHost(authority.Host)}
	}
	h, err := New(opts)
	if err != nil {
		return nil, err
	}
	return &Server{Addr: c.Addr, CertDir: c.CertDir, Handler: h}, nil
}

// readSecrets reads one secret a line, ignoring blank lines; the file is a mounted Secret, bounded.
func readSecrets(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--eventgrid-secrets-file: %w", err)
	}
	if len(data) > 1<<20 {
		return nil, errors.New("--eventgrid-secrets-file: larger than 1 MiB")
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// onlyHost is an HTTP client that reaches host and nothing else (the OIDC metadata names the keys' URL), follows
// no redirect and gives up after 10 s.
func onlyHost(host string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			if !strings.EqualFold(req.URL.Host, host) || req.URL.Scheme != "https" {
				return nil, fmt.Errorf("eventgrid: %s is not the Entra authority host %s", req.URL.Host, host)
			}
			return http.DefaultTransport.RoundTrip(req)
		}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
