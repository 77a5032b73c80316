// Package tlscheck proves a TLS Secret works the way a client sees it: it serves the Secret's tls.crt and
// tls.key on a loopback listener and completes a real TLS handshake that verifies the chain against ca.crt and
// the DNS name. The demo and the tests use it.
package tlscheck

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Handshake serves certPEM/keyPEM on 127.0.0.1 and connects to it trusting only caPEM, with SNI and name
// verification for serverName. It returns the verified chain the client saw, leaf first.
func Handshake(certPEM, keyPEM, caPEM []byte, serverName string) ([]*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key do not form a key pair: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("ca.crt holds no PEM certificate")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		served <- conn.(*tls.Conn).Handshake()
	}()

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), &tls.Config{
		RootCAs:    roots,
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		<-served
		return nil, fmt.Errorf("TLS handshake for %s failed: %w", serverName, err)
	}
	defer conn.Close()
	if err := <-served; err != nil {
		return nil, fmt.Errorf("server side of the handshake failed: %w", err)
	}
	chains := conn.ConnectionState().VerifiedChains
	if len(chains) == 0 {
		return nil, errors.New("handshake completed without a verified chain")
	}
	return chains[0], nil
}
