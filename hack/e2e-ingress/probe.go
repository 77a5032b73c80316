package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// backendBody is what the backend answers; seeing it through Traefik proves the request was routed by the
// Ingress rule to the Service's endpoint.
const backendBody = "hello from backend"

// backend is the plain HTTP server behind the Service.
type backend struct {
	addr     *net.TCPAddr
	srv      *http.Server
	requests atomic.Int64
}

// startBackend listens on the machine's own non-loopback IPv4 address: the API server refuses loopback addresses
// in EndpointSlices, and Traefik dials the EndpointSlice's address.
func startBackend() (*backend, error) {
	ip, err := hostIPv4()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	b := &backend{addr: l.Addr().(*net.TCPAddr)}
	b.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, backendBody)
	})}
	go func() { _ = b.srv.Serve(l) }()
	return b, nil
}

// close stops the backend.
func (b *backend) close() { _ = b.srv.Close() }

// hostIPv4 is the first non-loopback, non-link-local IPv4 address of an interface that is up.
func hostIPv4() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
				return ip4, nil
			}
		}
	}
	return nil, errors.New("no non-loopback IPv4 address on this machine: the API server refuses loopback addresses in EndpointSlices, so the backend has nowhere to listen")
}

// served is what one TLS handshake with Traefik saw.
type served struct {
	// chain is the certificates Traefik sent, in its order.
	chain []*x509.Certificate
	// verifyErr is why the chain does not verify against the roots for the host name (nil when it does).
	verifyErr error
}

// leafName names the served leaf for messages.
func (s served) leafName() string {
	if len(s.chain) == 0 {
		return "no certificate"
	}
	return fmt.Sprintf("%q (serial %s)", s.chain[0].Subject.String(), s.chain[0].SerialNumber)
}

// handshake connects to addr with SNI serverName and verifies what is served against roots and the name. It
// verifies after the handshake rather than in it, so a wrong certificate (Traefik's default one, an old leaf) is
// reported by name instead of as a bare handshake error.
func handshake(ctx context.Context, addr, serverName string, roots *x509.CertPool) (served, error) {
	d := &tls.Dialer{Config: &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return served{}, err
	}
	defer conn.Close()
	s := served{chain: conn.(*tls.Conn).ConnectionState().PeerCertificates}
	if len(s.chain) == 0 {
		return s, errors.New("the server sent no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range s.chain[1:] {
		intermediates.AddCert(c)
	}
	_, s.verifyErr = s.chain[0].Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: intermediates})
	return s, nil
}

// sameChain reports how have differs from want, certificate by certificate, in order.
func sameChain(what string, have, want []*x509.Certificate) error {
	if len(have) != len(want) {
		return fmt.Errorf("%s: %d certificates (%s), want %d (%s)", what, len(have), subjects(have), len(want), subjects(want))
	}
	for i := range have {
		if !bytes.Equal(have[i].Raw, want[i].Raw) {
			return fmt.Errorf("%s: certificate %d is %q serial %s, want %q serial %s", what, i,
				have[i].Subject.String(), have[i].SerialNumber, want[i].Subject.String(), want[i].SerialNumber)
		}
	}
	return nil
}

// subjects lists the certificates' subjects, leaf first.
func subjects(chain []*x509.Certificate) string {
	names := make([]string, len(chain))
	for i, c := range chain {
		names[i] = c.Subject.CommonName
	}
	return strings.Join(names, " <- ")
}

// parseCertificates decodes every CERTIFICATE block of a PEM bundle, in order.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in the PEM data")
	}
	return certs, nil
}

// httpsGet asks Traefik for https://serverName/ over a connection to addr, verifying the server against roots,
// and returns the body.
func httpsGet(ctx context.Context, addr, serverName string, roots *x509.CertPool) (string, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+serverName+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("HTTP %s: %q", resp.Status, body)
	}
	return string(body), nil
}
