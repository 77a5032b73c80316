package tlscheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a self-signed server certificate for dnsName and returns cert and key PEM.
func selfSigned(t *testing.T, dnsName string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func TestHandshake(t *testing.T) {
	cert, key := selfSigned(t, "web.example.com")
	otherCert, otherKey := selfSigned(t, "web.example.com")
	tests := []struct {
		name                string
		cert, key, ca       []byte
		serverName, errPart string
	}{
		{name: "verified", cert: cert, key: key, ca: cert, serverName: "web.example.com"},
		{name: "wrong name", cert: cert, key: key, ca: cert, serverName: "other.example.com", errPart: "handshake"},
		{name: "untrusted root", cert: cert, key: key, ca: otherCert, serverName: "web.example.com", errPart: "handshake"},
		{name: "key of another certificate", cert: cert, key: otherKey, ca: cert, serverName: "web.example.com", errPart: "key pair"},
		{name: "empty ca", cert: cert, key: key, ca: nil, serverName: "web.example.com", errPart: "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := Handshake(tt.cert, tt.key, tt.ca, tt.serverName)
			if tt.errPart == "" {
				if err != nil || len(chain) != 1 || chain[0].Subject.CommonName != "web.example.com" {
					t.Fatalf("want a verified chain, got %v, %v", chain, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Fatalf("want an error about %q, got %v", tt.errPart, err)
			}
		})
	}
}
