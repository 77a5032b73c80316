package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// leakWindow is the longest run of input characters an error may repeat.
const leakWindow = 16

// secretForms returns the representations of input an error must not
// repeat: the whole input without whitespace (a PFX's base64), each PEM
// block's base64 body, and each block's DER as raw bytes and as hex.
func secretForms(input string) []string {
	forms := []string{strings.Join(strings.Fields(input), "")}
	rest := []byte(input)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		forms = append(forms, base64.StdEncoding.EncodeToString(b.Bytes))
		if b.Type != "CERTIFICATE" {
			// Certificates are public and their DER holds names that messages
			// rightly quote; everything else may be secret in any form.
			forms = append(forms, string(b.Bytes), hex.EncodeToString(b.Bytes), strings.ToUpper(hex.EncodeToString(b.Bytes)))
		}
	}
	return forms
}

// keyForms returns representations of a private key's secret material.
func keyForms(t testing.TB, key crypto.Signer) []string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	forms := []string{base64.StdEncoding.EncodeToString(der), string(der), hex.EncodeToString(der)}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		forms = append(forms, k.D.String(), k.D.Text(16), k.Primes[0].String(), k.Primes[0].Text(16))
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d))
	}
	return forms
}

// leaked returns the first window of more than leakWindow characters of any
// form that msg contains, or "".
func leaked(msg string, forms []string) string {
	for _, f := range forms {
		for i := 0; i+leakWindow < len(f); i++ {
			if w := f[i : i+leakWindow+1]; strings.Contains(msg, w) {
				return w
			}
		}
	}
	return ""
}

// assertNoLeak fails if err's message repeats any part of the inputs longer
// than leakWindow characters.
func assertNoLeak(t testing.TB, err error, inputs ...string) {
	t.Helper()
	var forms []string
	for _, in := range inputs {
		forms = append(forms, secretForms(in)...)
	}
	if w := leaked(err.Error(), forms); w != "" {
		t.Errorf("error message repeats input material %q: %v", w, err)
	}
}

// TestLeakCheckerCatches proves the checker is not vacuous.
func TestLeakCheckerCatches(t *testing.T) {
	t.Parallel()
	key := keyPEM(t, testKey(t, algP256, "leaf"), "PRIVATE KEY")
	body := secretForms(key)[1]
	for _, msg := range []string{body[10:30], key[40:60], key} {
		if leaked("bad: "+msg, secretForms(key)) == "" {
			t.Errorf("leak of %q not detected", msg)
		}
	}
	if w := leaked("certificate chain is broken: CN=leaf (serial 0A)", secretForms(key)); w != "" {
		t.Errorf("false positive %q", w)
	}
}

// TestErrorsNeverLeakKeyMaterial runs every error path with inputs that hold a
// private key and checks the messages against the key's secret forms, on top
// of the per-input check the other error tests make.
func TestErrorsNeverLeakKeyMaterial(t *testing.T) {
	t.Parallel()
	c := newChain(t, algRSA)
	ec := newChain(t, algP384)
	rsaForms, ecForms := keyForms(t, c.leaf.key), keyForms(t, ec.leaf.key)
	rsaKey, ecKey := keyPEM(t, c.leaf.key, "RSA PRIVATE KEY"), keyPEM(t, ec.leaf.key, "EC PRIVATE KEY")

	var errs []error
	add := func(_ any, err error) { errs = append(errs, err) }
	decodes := []struct{ ct, v string }{
		{ContentTypePEM, rsaKey + certPEM(ec.leaf.cert)},                          // mismatch
		{ContentTypePEM, ecKey + certPEM(ec.leaf.cert, c.root.cert)},              // stray
		{ContentTypePEM, ecKey + certPEM(tamper(t, ec.leaf.cert), ec.inter.cert)}, // signature
		{ContentTypePEM, rsaKey + ecKey + certPEM(c.leaf.cert)},                   // two keys
		{ContentTypePEM, rsaKey},                                                  // no certificate
		{ContentTypePEM, rsaKey[:300] + certPEM(c.leaf.cert)},                     // truncated
		{ContentTypePEM, corruptKeyPEM(t, c.leaf.key) + certPEM(c.leaf.cert)},
		{ContentTypePEM, corruptKeyPEM(t, ec.leaf.key) + certPEM(ec.leaf.cert)},
		{ContentTypePEM, relabel(rsaKey, "EC PRIVATE KEY") + certPEM(c.leaf.cert)},
		{ContentTypePEM, relabel(ecKey, "RSA PRIVATE KEY") + certPEM(ec.leaf.cert)},
		{ContentTypePEM, relabel(rsaKey, "SECRET") + certPEM(c.leaf.cert)},
		{"application/json", rsaKey + certPEM(c.leaf.cert)},
		{ContentTypePKCS12, pfxValue(t, c.leaf.key, ec.leaf.cert)},
		{ContentTypePKCS12, pfxValue(t, ec.leaf.key, ec.leaf.cert, c.root.cert)},
		{ContentTypePKCS12, pfxValue(t, c.leaf.key, c.leaf.cert)[:1000]},
		{ContentTypePKCS12, pfxValue(t, c.leaf.key, c.leaf.cert)[4:]},
		{ContentTypePKCS12, "#" + pfxValue(t, c.leaf.key, c.leaf.cert)},
		{ContentTypePKCS12, base64.StdEncoding.EncodeToString([]byte(rsaKey))},
		{ContentTypePKCS12, rsaKey},
		{ContentTypePKCS12, pfxWithPassword(t, c)},
	}
	for i, d := range decodes {
		b, err := Decode(d.ct, d.v)
		if err == nil {
			t.Fatalf("decode case %d succeeded with leaf %s", i, describe(b.Leaf))
		}
		assertNoLeak(t, err, d.v)
		errs = append(errs, err)
	}
	add(ParseTLS([]byte(rsaKey), []byte(rsaKey)))
	add(ParseTLS([]byte(certPEM(c.leaf.cert)), []byte(ecKey)))
	add(ParseTLS([]byte(certPEM(c.inter.cert, c.leaf.cert)), []byte(rsaKey)))
	add(ParseTLS([]byte(certPEM(c.leaf.cert)), []byte(rsaKey+ecKey)))
	add(ParseTLS([]byte(certPEM(c.leaf.cert)), []byte(rsaKey[:200])))
	add(ParseTLS([]byte(certPEM(c.leaf.cert)), []byte(corruptKeyPEM(t, c.leaf.key))))
	add(nil, (&Bundle{Leaf: c.leaf.cert, Key: ec.leaf.key}).Verify(c.leaf.cert.NotBefore))
	add(nil, (&Bundle{Leaf: ec.leaf.cert, Key: ec.leaf.key, Intermediates: certs(c.inter)}).Verify(c.leaf.cert.NotBefore))
	add((&Bundle{Leaf: c.leaf.cert, Key: c.leaf.key}).PrivateKeyPEM("PKCS7"))

	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		for _, forms := range [][]string{rsaForms, ecForms} {
			if w := leaked(err.Error(), forms); w != "" {
				t.Errorf("case %d: error repeats key material %q: %v", i, w, err)
			}
		}
		if strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("case %d: error quotes PEM armour: %v", i, err)
		}
	}
}

// pfxTrustStore encodes certificates without a key, as Key Vault serves a
// certificate whose key is not exportable.
func pfxTrustStore(t testing.TB, cs ...*x509.Certificate) string {
	t.Helper()
	der, err := pkcs12.LegacyDES.EncodeTrustStore(cs, "")
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// truncatedPFX is base64 of the first half of a valid PFX.
func truncatedPFX(t testing.TB, c pki3) string {
	t.Helper()
	der, err := pkcs12.LegacyDES.Encode(c.leaf.key, c.leaf.cert, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der[:len(der)/2])
}

// pfxWithPassword is a PFX that needs a password Key Vault would not use.
func pfxWithPassword(t testing.TB, c pki3) string {
	t.Helper()
	der, err := pkcs12.Modern.Encode(c.leaf.key, c.leaf.cert, nil, "not-empty")
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// corruptKeyPEM is a PKCS#8 PEM whose DER has two bytes flipped a third of
// the way in: inside the private exponent or scalar.
func corruptKeyPEM(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	der[len(der)/3] ^= 0xFF
	der[len(der)/3+1] ^= 0xFF
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// legacyEncrypted is a key block with OpenSSL's legacy encryption headers.
func legacyEncrypted(t testing.TB, key crypto.Signer) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey)),
	}))
}

// selfSignedPEM is the PEM key and self-signed certificate of a new key of alg.
func selfSignedPEM(t testing.TB, alg keyAlg) string {
	t.Helper()
	self := selfSigned(t, alg)
	return keyPEM(t, self.key, "PRIVATE KEY") + certPEM(self.cert)
}

// ed25519PFX is a PFX holding an Ed25519 key and its self-signed certificate.
func ed25519PFX(t testing.TB) string {
	t.Helper()
	self := selfSigned(t, algEd25519)
	return pfxValue(t, self.key, self.cert)
}
