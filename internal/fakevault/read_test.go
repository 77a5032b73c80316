package fakevault_test

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func TestChallengeThenSuccess(t *testing.T) {
	s := startServer(t)
	v := seed(t, s, fakevault.CertSpec{Name: "web"})
	c := newClients(t, s, nil, noRetry)
	resp, err := c.certs.GetCertificate(ctx(t), "web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.ID.Version(); got != v.Version {
		t.Fatalf("version %q, want %q", got, v.Version)
	}
	if n := s.Count(fakevault.OpChallenge); n != 1 {
		t.Fatalf("challenges %d", n)
	}
	if n := s.Count(fakevault.OpToken); n != 1 {
		t.Fatalf("tokens %d", n)
	}
	if n := s.Count(fakevault.OpGetCertificate); n != 1 {
		t.Fatalf("gets %d", n)
	}
	// second call reuses token and challenge parameters
	if _, err := c.certs.GetCertificate(ctx(t), "web", "", nil); err != nil {
		t.Fatal(err)
	}
	if s.Count(fakevault.OpChallenge) != 1 || s.Count(fakevault.OpToken) != 1 || s.Count(fakevault.OpGetCertificate) != 2 {
		t.Fatalf("counts %v", s.Counts())
	}
	s.ResetCounts()
	if len(s.Counts()) != 0 {
		t.Fatal("ResetCounts")
	}
}

func TestChallengeResource(t *testing.T) {
	for host, want := range map[string]string{
		"myvault.vault.azure.net":     "https://vault.azure.net",
		"MyVault.Vault.Azure.Net":     "https://vault.azure.net",
		"myvault.vault.azure.cn":      "https://vault.azure.cn",
		"myhsm.managedhsm.azure.net":  "https://managedhsm.azure.net",
		"127.0.0.1:8443":              "https://0.0.1:8443",
		"localhost:8443":              "https://vault.azure.net",
		"vault.example.internal:8443": "https://example.internal:8443",
	} {
		if got := fakevault.ChallengeResource(host); got != want {
			t.Errorf("ChallengeResource(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestChallengeRaw(t *testing.T) {
	s := startServer(t)
	resp, body := rawDoAuth(t, s, http.MethodPost, "/certificates/x/create?api-version=7.5", `{"policy":{}}`, "")
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	u, _ := url.Parse(s.URL())
	// 127.0.0.1:PORT -> 0.0.1:PORT: the Azure SDK verifies the vault host ends with "." + the resource host.
	want := `Bearer authorization="https://login.microsoftonline.com/` + s.TenantID() + `", resource="https://0.0.1:` + u.Port() + `"`
	if got := resp.Header.Get("WWW-Authenticate"); got != want {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if !strings.Contains(string(body), `"code":"Unauthorized"`) || !strings.Contains(string(body), "AKV10000") {
		t.Fatalf("body %s", body)
	}
	resp, _ = rawDoAuth(t, s, http.MethodGet, "/certificates/x/?api-version=7.5", "", "Bearer not-a-token")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("bad token: %d", resp.StatusCode)
	}
	if s.Count(fakevault.OpChallenge) != 1 || s.Count(fakevault.OpUnauthorized) != 1 {
		t.Fatalf("counts %v", s.Counts())
	}
}

func TestGetCertificateLatestAndVersioned(t *testing.T) {
	s := startServer(t)
	v1 := seed(t, s, fakevault.CertSpec{Name: "Web", KeyType: "EC", Tags: map[string]string{"a": "b"}})
	v2, err := s.Rotate("web")
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version == v2.Version || len(v2.Version) != 32 || strings.ToLower(v2.Version) != v2.Version {
		t.Fatalf("versions %q %q", v1.Version, v2.Version)
	}
	if v1.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(v2.Leaf.PublicKey) {
		t.Fatal("rotate kept the key")
	}
	c := newClients(t, s, nil, noRetry)
	latest, err := c.certs.GetCertificate(ctx(t), "web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if latest.ID.Version() != v2.Version || latest.ID.Name() != "Web" {
		t.Fatalf("latest id %s", *latest.ID)
	}
	if !strings.HasPrefix(string(*latest.ID), s.URL()+"certificates/Web/") {
		t.Fatalf("id %s", *latest.ID)
	}
	if got := fakevault.Thumbprint(v2.Leaf); got != v2.Thumbprint || len(got) != 40 {
		t.Fatalf("thumbprint %s", got)
	}
	cert, err := x509.ParseCertificate(latest.CER)
	if err != nil || !cert.Equal(v2.Leaf) {
		t.Fatalf("cer: %v", err)
	}
	if *latest.Attributes.RecoveryLevel != "Recoverable+Purgeable" || *latest.Attributes.RecoverableDays != 90 || !*latest.Attributes.Enabled {
		t.Fatalf("attributes %+v", latest.Attributes)
	}
	if !latest.Attributes.Expires.Equal(v2.Leaf.NotAfter) || !latest.Attributes.NotBefore.Equal(v2.Leaf.NotBefore) {
		t.Fatal("nbf/exp")
	}
	if *latest.Policy.KeyProperties.KeyType != azcertificates.KeyTypeEC || *latest.Policy.KeyProperties.Curve != azcertificates.CurveNameP256 {
		t.Fatalf("policy %+v", latest.Policy.KeyProperties)
	}
	if string(*latest.KID) != s.URL()+"keys/Web/"+v2.Version || string(*latest.SID) != v2.SecretID {
		t.Fatalf("kid/sid %s %s", *latest.KID, *latest.SID)
	}
	old, err := c.certs.GetCertificate(ctx(t), "WEB", v1.Version, nil)
	if err != nil {
		t.Fatal(err)
	}
	if old.ID.Version() != v1.Version || *old.Tags["a"] != "b" {
		t.Fatalf("old %s %v", *old.ID, old.Tags)
	}
	// both raw forms of "latest"
	for _, p := range []string{"/certificates/web/?api-version=2025-07-01", "/certificates/web?api-version=7.5"} {
		resp, body := rawDo(t, s, http.MethodGet, p, "")
		if resp.StatusCode != 200 || !strings.Contains(string(body), v2.Version) {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
		if resp.Header.Get("x-ms-request-id") == "" || resp.Header.Get("x-ms-keyvault-service-version") == "" {
			t.Fatal("headers")
		}
	}
}

func TestGetSecretPFXChain(t *testing.T) {
	s := startServer(t)
	v := seed(t, s, fakevault.CertSpec{Name: "chain", ChainDepth: 3, DNSNames: []string{"a.example.com", "b.example.com"}})
	if len(v.Chain) != 3 || !v.Chain[2].Equal(s.SeedCA().Root) || !v.Chain[1].Equal(s.SeedCA().Intermediate) {
		t.Fatal("chain")
	}
	c := newClients(t, s, nil, noRetry)
	sec, err := c.secrets.GetSecret(ctx(t), "chain", v.Version, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *sec.ContentType != "application/x-pkcs12" || !*sec.Managed || string(*sec.KID) != s.URL()+"keys/chain/"+v.Version || string(*sec.ID) != v.SecretID {
		t.Fatalf("secret props %v %v %v %v", *sec.ContentType, *sec.Managed, *sec.KID, *sec.ID)
	}
	if !sec.Attributes.Expires.Equal(v.Leaf.NotAfter) {
		t.Fatal("secret exp")
	}
	der, err := base64.StdEncoding.DecodeString(*sec.Value)
	if err != nil {
		t.Fatal(err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, "")
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Equal(v.Leaf) || len(cas) != 2 || !cas[0].Equal(v.Chain[1]) || !cas[1].Equal(v.Chain[2]) {
		t.Fatal("pfx chain order")
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatal("key does not match")
	}
	if err := leaf.CheckSignatureFrom(cas[0]); err != nil {
		t.Fatal(err)
	}
	// latest (no version) and raw
	latest, err := c.secrets.GetSecret(ctx(t), "chain", "", nil)
	if err != nil || *latest.Value == "" {
		t.Fatal(err)
	}
}

func TestGetSecretPEMAndOutContentType(t *testing.T) {
	s := startServer(t)
	v := seed(t, s, fakevault.CertSpec{Name: "pem", ContentType: "application/x-pem-file", ChainDepth: 2})
	c := newClients(t, s, nil, noRetry)
	sec, err := c.secrets.GetSecret(ctx(t), "pem", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *sec.ContentType != "application/x-pem-file" {
		t.Fatal(*sec.ContentType)
	}
	rest := []byte(*sec.Value)
	var types []string
	var first *x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		types = append(types, b.Type)
		if b.Type == "PRIVATE KEY" {
			if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				t.Fatal(err)
			}
		}
		if b.Type == "CERTIFICATE" && first == nil {
			first, _ = x509.ParseCertificate(b.Bytes)
		}
	}
	if strings.Join(types, ",") != "PRIVATE KEY,CERTIFICATE,CERTIFICATE" || !first.Equal(v.Leaf) {
		t.Fatalf("blocks %v", types)
	}

	// PFX -> PEM conversion, and the 400 for anything else
	seed(t, s, fakevault.CertSpec{Name: "pfx"})
	resp, body := rawDo(t, s, http.MethodGet, "/secrets/pfx/?api-version=2025-07-01&outContentType=application%2Fx-pem-file", "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "BEGIN PRIVATE KEY") || !strings.Contains(string(body), `"contentType":"application/x-pem-file"`) {
		t.Fatalf("convert: %d %s", resp.StatusCode, body)
	}
	resp, body = rawDo(t, s, http.MethodGet, "/secrets/pem/?api-version=2025-07-01&outContentType=application%2Fx-pem-file", "")
	if resp.StatusCode != 400 || !strings.Contains(string(body), "BadParameter") {
		t.Fatalf("pem->pem: %d %s", resp.StatusCode, body)
	}
}

func TestSecretVariants(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	decode := func(name string) (crypto.PrivateKey, *x509.Certificate, []*x509.Certificate, error) {
		sec, err := c.secrets.GetSecret(ctx(t), name, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := base64.StdEncoding.DecodeString(*sec.Value)
		return pkcs12.DecodeChain(der, "")
	}
	// scrambled: the first certificate of the PFX is not the leaf
	v := seed(t, s, fakevault.CertSpec{Name: "scrambled", ChainDepth: 3, ScrambleChain: true})
	_, first, rest, err := decode("scrambled")
	if err != nil {
		t.Fatal(err)
	}
	if first.Equal(v.Leaf) || len(rest) != 2 || !rest[1].Equal(v.Leaf) {
		t.Fatal("not scrambled")
	}
	// not exportable: no key; policy says so
	seed(t, s, fakevault.CertSpec{Name: "noexport", NotExportable: true})
	if _, _, _, err := decode("noexport"); err == nil || !strings.Contains(err.Error(), "private key missing") {
		t.Fatalf("noexport: %v", err)
	}
	got, _ := c.certs.GetCertificate(ctx(t), "noexport", "", nil)
	if *got.Policy.KeyProperties.Exportable {
		t.Fatal("exportable")
	}
	// strip and corrupt
	seed(t, s, fakevault.CertSpec{Name: "stripped"})
	if err := s.StripKey("stripped", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := decode("stripped"); err == nil {
		t.Fatal("stripped has a key")
	}
	cv := seed(t, s, fakevault.CertSpec{Name: "corrupt", KeyType: "EC", Curve: "P-384"})
	if err := s.CorruptKey("corrupt", cv.Version); err != nil {
		t.Fatal(err)
	}
	key, leaf, _, err := decode("corrupt")
	if err != nil {
		t.Fatal(err)
	}
	pub := key.(crypto.Signer).Public()
	if pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatal("key still matches")
	}
	if fakeCurve := leaf.PublicKey; fakeCurve == nil {
		t.Fatal("leaf key")
	}
}

func TestVersionsPagerFollowsNextLink(t *testing.T) {
	s := startServer(t)
	var want []string
	for i := 0; i < 30; i++ {
		v := seed(t, s, fakevault.CertSpec{Name: "many", KeyType: "EC"})
		want = append(want, v.Version)
	}
	c := newClients(t, s, nil, noRetry)
	pager := c.certs.NewListCertificatePropertiesVersionsPager("many", nil)
	seen := map[string]bool{}
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Value) > 25 {
			t.Fatalf("page of %d", len(page.Value))
		}
		for _, it := range page.Value {
			seen[it.ID.Version()] = true
			if it.X509Thumbprint == nil || it.Attributes.RecoveryLevel != nil {
				t.Fatalf("item %+v", it)
			}
		}
	}
	if pages != 2 || len(seen) != 30 {
		t.Fatalf("pages %d, versions %d", pages, len(seen))
	}
	for _, v := range want {
		if !seen[v] {
			t.Fatalf("missing %s", v)
		}
	}
	if n := s.Count(fakevault.OpGetCertificateVersions); n != 2 {
		t.Fatalf("count %d", n)
	}
	// maxresults is honoured and capped; nextLink is absolute with api-version
	resp, body := rawDo(t, s, http.MethodGet, "/certificates/many/versions?api-version=7.5&maxresults=100", "")
	var pg struct {
		Value    []json.RawMessage
		NextLink *string
	}
	if err := json.Unmarshal(body, &pg); err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp.StatusCode)
	}
	if len(pg.Value) != 25 || pg.NextLink == nil || !strings.HasPrefix(*pg.NextLink, s.URL()+"certificates/many/versions?") || !strings.Contains(*pg.NextLink, "api-version=7.5") {
		t.Fatalf("page %d next %v", len(pg.Value), pg.NextLink)
	}
	_, body = rawDo(t, s, http.MethodGet, "/certificates/many/versions?api-version=7.5&maxresults=10", "")
	_ = json.Unmarshal(body, &pg)
	if len(pg.Value) != 10 {
		t.Fatalf("maxresults=10 gave %d", len(pg.Value))
	}
}

func TestListCertificatesIncludePending(t *testing.T) {
	s := startServer(t)
	for _, n := range []string{"a1", "a2", "a3"} {
		seed(t, s, fakevault.CertSpec{Name: n, KeyType: "EC", Tags: map[string]string{"n": n}})
	}
	c := newClients(t, s, nil, noRetry)
	_, err := c.certs.CreateCertificate(ctx(t), "pend", azcertificates.CreateCertificateParameters{
		CertificatePolicy: &azcertificates.CertificatePolicy{
			IssuerParameters:          &azcertificates.IssuerParameters{Name: to("Unknown")},
			X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: to("CN=pend")},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list := func(include bool) []*azcertificates.CertificateProperties {
		var out []*azcertificates.CertificateProperties
		p := c.certs.NewListCertificatePropertiesPager(&azcertificates.ListCertificatePropertiesOptions{IncludePending: to(include)})
		for p.More() {
			pg, err := p.NextPage(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, pg.Value...)
		}
		return out
	}
	if got := list(false); len(got) != 3 {
		t.Fatalf("without pending: %d", len(got))
	}
	got := list(true)
	if len(got) != 4 {
		t.Fatalf("with pending: %d", len(got))
	}
	for _, it := range got {
		if it.ID.Version() != "" {
			t.Fatalf("list id has a version: %s", *it.ID)
		}
		if it.ID.Name() == "pend" {
			if it.X509Thumbprint != nil || *it.Attributes.Enabled {
				t.Fatalf("pending item %+v", it)
			}
		} else if it.X509Thumbprint == nil || *it.Tags["n"] != it.ID.Name() {
			t.Fatalf("item %+v", it)
		}
	}
}

func TestDisabledVersion(t *testing.T) {
	s := startServer(t)
	v := seed(t, s, fakevault.CertSpec{Name: "dis", KeyType: "EC"})
	if err := s.SetEnabled("dis", "", false); err != nil {
		t.Fatal(err)
	}
	c := newClients(t, s, nil, noRetry)
	got, err := c.certs.GetCertificate(ctx(t), "dis", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *got.Attributes.Enabled {
		t.Fatal("enabled")
	}
	_, err = c.secrets.GetSecret(ctx(t), "dis", v.Version, nil)
	if inner := respErr(t, err, 403, "Forbidden"); inner != "SecretDisabled" {
		t.Fatalf("inner %q", inner)
	}
	_, body := rawDo(t, s, http.MethodGet, "/secrets/dis/"+v.Version+"?api-version=7.5", "")
	if string(body) != `{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}` {
		t.Fatalf("body %s", body)
	}
	if err := s.SetEnabled("dis", v.Version, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.secrets.GetSecret(ctx(t), "dis", v.Version, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNotFoundShapes(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	_, err := c.certs.GetCertificate(ctx(t), "cert-that-does-not-exist", "", nil)
	respErr(t, err, 404, "CertificateNotFound")
	resp, body := rawDo(t, s, http.MethodGet, "/certificates/cert-that-does-not-exist/?api-version=7.5", "")
	want := `{"error":{"code":"CertificateNotFound","message":"A certificate with (name/id) cert-that-does-not-exist was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"}}`
	if string(body) != want || resp.Header.Get("x-ms-error-code") != "CertificateNotFound" {
		t.Fatalf("body %s", body)
	}
	_, err = c.secrets.GetSecret(ctx(t), "nope", "", nil)
	respErr(t, err, 404, "SecretNotFound")
	seedEC(t, s, "exists")
	_, err = c.certs.GetCertificate(ctx(t), "exists", "0123456789abcdef0123456789abcdef", nil)
	respErr(t, err, 404, "CertificateNotFound")
	_, err = c.secrets.GetSecret(ctx(t), "exists", "0123456789abcdef0123456789abcdef", nil)
	respErr(t, err, 404, "SecretNotFound")
	_, err = c.certs.GetCertificateOperation(ctx(t), "exists", nil) // seeded: completed operation
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = rawDo(t, s, http.MethodGet, "/certificates/bad_name/?api-version=7.5", "")
	if resp.StatusCode != 400 {
		t.Fatalf("bad name: %d", resp.StatusCode)
	}
}

func to[T any](v T) *T { return &v }
