package keyvault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// MaxResponseBytes caps every response body read from a vault or an authority. A certificate bundle, a
// secret holding a long chain, a list page or a token response is tens of KiB at most; 4 MiB is far above
// any of them and far below a pod's memory limit, so a hostile server cannot make the controller buffer
// an unbounded body.
const MaxResponseBytes = 4 << 20

// maxResponseHeaderBytes bounds response headers on the controller's own transport (net/http's default
// is 10 MiB); Key Vault and Entra ID send a few KiB.
const maxResponseHeaderBytes = 1 << 20

// ErrHostNotAllowed is matched (errors.Is) by every *HostNotAllowedError.
var ErrHostNotAllowed = errors.New("host not allowed for this connection")

// ErrResponseTooLarge is matched (errors.Is) by every *ResponseTooLargeError.
var ErrResponseTooLarge = errors.New("response too large")

// HostNotAllowedError is a request that Config.AllowedHosts kept from leaving the process: nothing was
// sent. The vault URL, the authority host, or a URL a vault or authority handed back (a nextLink, a token
// endpoint from discovery) named a host outside the connection's list. Retrying does not help until the
// connection or the list changes.
type HostNotAllowedError struct {
	// Host is the refused host:port, lower-case.
	Host string
	// Allowed is the connection's normalised list.
	Allowed []string
}

// Error names the host and the allowed ones.
func (e *HostNotAllowedError) Error() string {
	const show = 8 // the list comes from configuration, but keep a condition readable
	allowed := e.Allowed
	more := ""
	if len(allowed) > show {
		allowed, more = allowed[:show], fmt.Sprintf(", and %d more", len(e.Allowed)-show)
	}
	return fmt.Sprintf("vaultcert refused to send a request to host %q: not among the hosts allowed for this connection (%s%s)",
		e.Host, strings.Join(allowed, ", "), more)
}

// Is makes errors.Is(err, ErrHostNotAllowed) true.
func (e *HostNotAllowedError) Is(target error) bool { return target == ErrHostNotAllowed }

// NonRetriable tells azcore's retry policy not to retry: the same request would be refused again.
func (e *HostNotAllowedError) NonRetriable() {}

// ResponseTooLargeError is a response whose body (or advertised Content-Length) exceeds MaxResponseBytes.
// The read fails instead of truncating, so a cut-off body can never parse as something valid.
type ResponseTooLargeError struct {
	// Host is the host:port that sent the response.
	Host string
	// Limit is the cap in bytes.
	Limit int64
}

// Error names the host and the cap.
func (e *ResponseTooLargeError) Error() string {
	return fmt.Sprintf("response from %s exceeds %s", e.Host, formatBytes(e.Limit))
}

// Is makes errors.Is(err, ErrResponseTooLarge) true.
func (e *ResponseTooLargeError) Is(target error) bool { return target == ErrResponseTooLarge }

// NonRetriable stops azcore from fetching the same oversized body again (it retries failed GET downloads).
func (e *ResponseTooLargeError) NonRetriable() {}

// IsHostNotAllowed reports whether err is a request refused by Config.AllowedHosts.
func IsHostNotAllowed(err error) bool { return errors.Is(err, ErrHostNotAllowed) }

// IsResponseTooLarge reports whether err is a response over MaxResponseBytes.
func IsResponseTooLarge(err error) bool { return errors.Is(err, ErrResponseTooLarge) }

func formatBytes(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// normalizeAllowedHost turns an AllowedHosts entry ("host" or "host:port", any case; IPv6 in brackets
// when a port is given) into "host:port", 443 when the port is missing.
func normalizeAllowedHost(entry string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(entry))
	if s == "" || strings.ContainsAny(s, "/?#@ \t") {
		return "", fmt.Errorf("%w: allowed host %q must be a host or host:port, without scheme or path", ErrInvalidConfig, entry)
	}
	host, port := s, "443"
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Contains(s, ":") && net.ParseIP(s) == nil {
		return "", fmt.Errorf("%w: allowed host %q: %v", ErrInvalidConfig, entry, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w: allowed host %q has an invalid port", ErrInvalidConfig, entry)
	}
	if host == "" {
		return "", fmt.Errorf("%w: allowed host %q has no host", ErrInvalidConfig, entry)
	}
	return net.JoinHostPort(host, port), nil
}

// normalizeAllowedHosts normalises, sorts and de-duplicates a list; nil for an empty list.
func normalizeAllowedHosts(entries []string) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		n, err := normalizeAllowedHost(e)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// requestHostPort is a request URL's host as "host:port" (lower-case, the scheme's port when absent), the
// form AllowedHosts entries are compared in.
func requestHostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if strings.EqualFold(u.Scheme, "http") {
			port = "80"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// guardTransport is the transport under every pipeline of a client (vault calls, the challenge probe,
// token requests, discovery): it refuses hosts outside the allow-list before anything is sent, and caps
// response bodies. Being the transport, it sees requests no pipeline policy of ours sees (azidentity's).
type guardTransport struct {
	next policy.Transporter
	// allowed is the normalised allow-list; nil allows every host.
	allowed []string
	limit   int64
}

// newGuardTransport wraps next. allowed must be normalised (normalizeAllowedHosts).
func newGuardTransport(next policy.Transporter, allowed []string) *guardTransport {
	return &guardTransport{next: next, allowed: allowed, limit: MaxResponseBytes}
}

// Do implements policy.Transporter.
func (t *guardTransport) Do(req *http.Request) (*http.Response, error) {
	host := requestHostPort(req.URL)
	sink := guardSinkFrom(req.Context())
	// A zone ("%eth0") is dropped by the dialer but kept by a host comparison: never let one through a list.
	if t.allowed != nil && (!slices.Contains(t.allowed, host) || strings.Contains(req.URL.Host, "%")) {
		err := &HostNotAllowedError{Host: host, Allowed: t.allowed}
		sink.record(err)
		return nil, err
	}
	resp, err := t.next.Do(req)
	if err != nil || resp == nil {
		return resp, err
	}
	tooLarge := &ResponseTooLargeError{Host: host, Limit: t.limit}
	if resp.ContentLength > t.limit {
		// Refused on the header alone: nothing of the body is read.
		_ = resp.Body.Close()
		sink.record(tooLarge)
		return nil, tooLarge
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &cappedBody{body: resp.Body, left: t.limit, err: tooLarge, sink: sink}
	}
	return resp, nil
}

// cappedBody fails a read that goes past the cap instead of returning a truncated body.
type cappedBody struct {
	body io.ReadCloser
	left int64 // bytes still allowed; negative once the cap was passed
	err  *ResponseTooLargeError
	sink *guardSink
}

// Read implements io.Reader.
func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err
	}
	// Ask for one byte more than allowed: getting it proves the body is over the cap.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.sink.record(b.err)
		return n - 1, b.err
	}
	return n, err
}

// Close implements io.Closer.
func (b *cappedBody) Close() error { return b.body.Close() }

// guardSink collects the first error the guard transport produced for requests made with a context.
// azidentity flattens transport errors into message text, so the credential wrapper (markedCredential)
// reads the sink to return a typed error.
type guardSink struct {
	mu  sync.Mutex
	err error
}

type guardSinkKey struct{}

// withGuardSink returns ctx carrying a new sink.
func withGuardSink(ctx context.Context) (context.Context, *guardSink) {
	s := &guardSink{}
	return context.WithValue(ctx, guardSinkKey{}, s), s
}

// guardSinkFrom returns ctx's sink, or nil.
func guardSinkFrom(ctx context.Context) *guardSink {
	s, _ := ctx.Value(guardSinkKey{}).(*guardSink)
	return s
}

// record keeps err if it is the first; a nil sink ignores it.
func (s *guardSink) record(err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// get returns the recorded error, or nil.
func (s *guardSink) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
