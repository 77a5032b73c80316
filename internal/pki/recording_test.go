package pki

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recording is the part of an Azure SDK test-proxy recording these tests read.
type recording struct {
	Entries []struct {
		RequestURI    string          `json:"RequestUri"`
		RequestMethod string          `json:"RequestMethod"`
		StatusCode    int             `json:"StatusCode"`
		ResponseBody  json.RawMessage `json:"ResponseBody"`
	} `json:"Entries"`
}

// recorded holds what one recording says about one certificate.
type recorded struct {
	contentType, value string // from GET /secrets/{name}
	cer                []byte // DER from GET /certificates/{name}
	x5t                string // base64url SHA-1 from the same response
}

// loadRecording reads the certificate-backed secret and the certificate
// bundle from a recording of real Key Vault traffic (internal/fakevault/testdata/keyvault-recordings/README.md).
func loadRecording(t *testing.T, name string) recorded {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "fakevault", "testdata", "keyvault-recordings", name))
	if err != nil {
		t.Fatal(err)
	}
	var rec recording
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	var out recorded
	for _, e := range rec.Entries {
		if e.StatusCode != 200 || e.RequestMethod != "GET" {
			continue
		}
		var body struct {
			Value       string `json:"value"`
			ContentType string `json:"contentType"`
			Cer         string `json:"cer"`
			X5T         string `json:"x5t"`
		}
		if err := json.Unmarshal(e.ResponseBody, &body); err != nil {
			continue // not an object
		}
		switch {
		case strings.Contains(e.RequestURI, "/secrets/") && body.Value != "":
			out.contentType, out.value = body.ContentType, body.Value
		case strings.Contains(e.RequestURI, "/certificates/") && body.Cer != "":
			if out.cer, err = base64.StdEncoding.DecodeString(body.Cer); err != nil {
				t.Fatalf("cer: %v", err)
			}
			out.x5t = body.X5T
		}
	}
	if out.value == "" || out.cer == nil {
		t.Fatalf("%s: no secret value or no cer found", name)
	}
	return out
}

// TestDecodeKeyVaultRecordings decodes secret values the real service sent.
func TestDecodeKeyVaultRecordings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, contentType string
	}{
		{"recording_can_get_a_certificates_secret_in_pem_format.json", ContentTypePEM},
		{"recording_can_get_a_certificates_secret_in_pkcs_12_format.json", ContentTypePKCS12},
	}
	for _, tc := range tests {
		t.Run(tc.contentType, func(t *testing.T) {
			t.Parallel()
			rec := loadRecording(t, tc.file)
			if rec.contentType != tc.contentType {
				t.Fatalf("recorded contentType %q, want %q", rec.contentType, tc.contentType)
			}
			for _, ct := range []string{rec.contentType, ""} {
				b, err := Decode(ct, rec.value)
				if err != nil {
					t.Fatalf("Decode(%q): %v", ct, err)
				}
				if got := b.Leaf.Subject.String(); got != "CN=MyCert" {
					t.Errorf("subject %q, want CN=MyCert", got)
				}
				key, ok := b.Key.(*rsa.PrivateKey)
				if !ok || key.N.BitLen() != 2048 {
					t.Errorf("key is %s, want RSA 2048", describeKey(b.Key))
				}
				if !KeyMatches(b.Leaf, b.Key) {
					t.Error("key does not match the leaf")
				}
				if !bytes.Equal(b.Leaf.Raw, rec.cer) {
					t.Error("leaf differs from the certificate bundle's cer")
				}
				if b.Root != nil || len(b.Intermediates) != 0 {
					t.Errorf("self-signed leaf got issuers: %s", describeAll(b.Chain()[1:]))
				}
				x5t, err := base64.RawURLEncoding.DecodeString(rec.x5t)
				if err != nil {
					t.Fatalf("x5t: %v", err)
				}
				if got, want := Thumbprint(b.Leaf), strings.ToUpper(hex.EncodeToString(x5t)); got != want {
					t.Errorf("Thumbprint %s, want x5t %s", got, want)
				}
				// The certificate has expired or will; Verify does not care.
				if err := b.Verify(b.Leaf.NotAfter.Add(365 * 24 * time.Hour)); err != nil {
					t.Errorf("Verify: %v", err)
				}
				// And the Secret written from it reads back.
				crt := b.CertificatesPEM("")
				keyPEM, err := b.PrivateKeyPEM(KeyPKCS1)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ParseTLS(crt, keyPEM); err != nil {
					t.Errorf("ParseTLS: %v", err)
				}
				if !bytes.Equal(b.CAPEM(), crt) {
					t.Error("ca.crt is not the self-signed leaf")
				}
			}
		})
	}
}
