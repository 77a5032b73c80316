package issuer

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestSubjectRoundTrip(t *testing.T) {
	n, err := ParseSubject(`CN=www.contoso.com, O="Contoso, Ltd", S=WA; C=US`)
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatSubject(n); got != "CN=www.contoso.com, O=Contoso, Ltd, S=WA, C=US" {
		t.Fatalf("format %q", got)
	}
	if _, err := ParseSubject("nonsense"); err == nil {
		t.Fatal("accepted nonsense")
	}
}

func TestIssueAndOrderChain(t *testing.T) {
	ca, err := NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey(KeySpec{Type: "EC", Curve: "P-384"})
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := ParseSubject("CN=leaf")
	ku, _ := ParseKeyUsage([]string{"digitalSignature"})
	l := Leaf{Subject: subj, DNSNames: []string{"leaf"}, EKUs: []string{EKUServerAuth, "1.2.3.4"}, KeyUsage: ku,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	chain, err := ca.Issue(key.Public(), l, 3)
	if err != nil || len(chain) != 3 {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root)
	inter := x509.NewCertPool()
	inter.AddCert(ca.Intermediate)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "leaf"}); err != nil {
		t.Fatal(err)
	}
	if got := EKUStrings(chain[0]); len(got) != 2 {
		t.Fatalf("ekus %v", got)
	}
	ordered := OrderChain(chain[0], []*x509.Certificate{chain[2], chain[0], chain[1]})
	for i := range chain {
		if !ordered[i].Equal(chain[i]) {
			t.Fatalf("order at %d", i)
		}
	}
	for _, ct := range []string{ContentTypePKCS12, ContentTypePEM} {
		val, err := Encode(ct, key, []*x509.Certificate{chain[1], chain[0]})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := DecodeValue(val, "")
		if err != nil || dec.Key == nil || len(dec.Certs) != 2 || !dec.Certs[0].Equal(chain[1]) {
			t.Fatalf("%s: %v", ct, err)
		}
	}
	if _, err := NewKey(KeySpec{Type: "RSA", Size: 1024}); err == nil {
		t.Fatal("RSA 1024 accepted")
	}
}
