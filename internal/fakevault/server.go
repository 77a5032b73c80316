package fakevault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// DefaultTenantID is the tenant the fake authority serves unless Options.TenantID is set.
const DefaultTenantID = "72f988bf-0000-4000-8000-00000000fa4e"

// ServiceVersion is sent in x-ms-keyvault-service-version, like the recordings.
const ServiceVersion = "1.9.3070.2"

// Options configures Start.
type Options struct {
	// Addr is the listen address, default "127.0.0.1:0".
	Addr string
	// TenantID is the Entra tenant served by the authority, default DefaultTenantID.
	TenantID string
	// Now is the clock for nbf/exp/created/updated, pending durations, deletion delays and
	// AutoRenew; default time.Now. Tokens and the request limiter always use the real clock.
	Now func() time.Time
	// Hostnames are extra DNS names or IP addresses put in the TLS server certificate
	// (127.0.0.1, ::1 and localhost are always there).
	Hostnames []string
}

// Server is a running fake Key Vault plus token authority on one TLS listener.
// All methods are safe for concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	tenant  string
	ln      net.Listener
	srv     *http.Server
	caPEM   []byte
	baseURL string
	closed  chan struct{}
	once    sync.Once

	mu              sync.Mutex
	certs           map[string]*certificate // by lower-case name
	deleted         map[string]*deletedCert // by lower-case name
	issuers         map[string]*namedIssuer // by lower-case name
	seedCA          *issuer.CA
	pendingDuration time.Duration
	deletionDelay   time.Duration
	failNext        map[string]opFailure
	backdate        map[string]time.Duration // by lower-case name; see SetIssueBackdate
	lastRenewScan   time.Time
	renewMu         sync.Mutex

	auth   *authority
	faults *faultSet
	counts *counter
	admin  http.Handler
}

// Start listens on opts.Addr and serves the vault, the authority and the admin API over TLS.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	seedCA, err := issuer.NewCA("fakevault Test")
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		now:      now,
		tenant:   opts.TenantID,
		closed:   make(chan struct{}),
		certs:    map[string]*certificate{},
		deleted:  map[string]*deletedCert{},
		issuers:  map[string]*namedIssuer{},
		seedCA:   seedCA,
		faults:   newFaultSet(),
		counts:   newCounter(),
		failNext: map[string]opFailure{},
	}
	if s.auth, err = newAuthority(s.tenant); err != nil {
		return nil, err
	}
	s.admin = s.newAdminHandler()
	tlsCert, caPEM, err := serverCertificate(opts.Hostnames)
	if err != nil {
		return nil, err
	}
	s.caPEM = caPEM
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.baseURL = "https://" + publicHostPort(ln.Addr()) + "/"
	s.srv = &http.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{tlsCert},
			NextProtos:   []string{"http/1.1"}, // HTTP/1.1 only, so transport faults can hijack
			MinVersion:   tls.VersionTLS12,
		},
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	go func() { _ = s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig)) }()
	return s, nil
}

func publicHostPort(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := "127.0.0.1"
	if !tcp.IP.IsUnspecified() && !tcp.IP.IsLoopback() {
		host = tcp.IP.String()
	} else if tcp.IP.To4() == nil && tcp.IP.IsLoopback() {
		host = "::1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// URL is the vault URL, "https://127.0.0.1:PORT/".
func (s *Server) URL() string { return s.baseURL }

// AuthorityHost is the authority host for azcore's cloud.Configuration.ActiveDirectoryAuthorityHost
// (the same listener): "https://127.0.0.1:PORT/".
func (s *Server) AuthorityHost() string { return s.baseURL }

// TenantID is the tenant the authority issues tokens for and the 401 challenge names.
func (s *Server) TenantID() string { return s.tenant }

// CAPEM is the PEM of the CA the TLS server certificate chains to (put it in RootCAs).
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener and ends every connection, including requests held by faults.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		_ = s.srv.Close()
	})
}

// ServeHTTP dispatches to the admin API (/admin/), the managed identity endpoint (/msi/token), the
// authority, or the vault.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	commonHeaders(w, r)
	first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch strings.ToLower(first) {
	case "admin":
		s.admin.ServeHTTP(w, r)
	case "certificates", "deletedcertificates", "secrets", "deletedsecrets", "keys", "deletedkeys":
		s.serveVault(w, r)
	case "msi":
		s.serveManagedIdentity(w, r)
	default:
		s.serveAuthority(w, r)
	}
}

func commonHeaders(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "-1")
	h.Set("Strict-Transport-Security", "max-age=31536000;includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("x-ms-request-id", newUUID())
	h.Set("x-ms-keyvault-region", "fakeregion")
	h.Set("x-ms-keyvault-service-version", ServiceVersion)
	h.Set("x-ms-keyvault-network-info", "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;")
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		h.Set("x-ms-client-request-id", id)
	}
}

// serverCertificate makes a CA and a server certificate for 127.0.0.1, ::1, localhost and extra names.
func serverCertificate(extra []string) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "fakevault TLS CA", Organization: []string{"fakevault"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "fakevault"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	for _, h := range extra {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, caPEM, nil
}

// ClientTLSConfig returns a TLS configuration that trusts the server's CA.
func (s *Server) ClientTLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// HTTPClient returns an *http.Client (a policy.Transporter for azcore) that trusts the server's CA.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     s.ClientTLSConfig(),
		MaxIdleConnsPerHost: 64,
		Proxy:               nil,
	}}
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func newHexID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

var errClosed = errors.New("fakevault: server closed")
