package keyvault

import (
	"errors"
	"strings"
	"testing"
)

func TestOperationName(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"GET", "/certificates/web/", "GetCertificate"},
		{"GET", "/certificates/web/0123456789abcdef0123456789abcdef", "GetCertificate"},
		{"PATCH", "/certificates/web/0123456789abcdef0123456789abcdef", "UpdateCertificate"},
		{"GET", "/certificates", "ListCertificates"},
		{"GET", "/certificates/web/versions", "ListCertificateVersions"},
		{"POST", "/certificates/web/create", "CreateCertificate"},
		{"POST", "/certificates/web/import", "ImportCertificate"},
		{"GET", "/certificates/web/pending", "GetCertificateOperation"},
		{"PATCH", "/certificates/web/pending", "UpdateCertificateOperation"},
		{"DELETE", "/certificates/web/pending", "DeleteCertificateOperation"},
		{"POST", "/certificates/web/pending/merge", "MergeCertificate"},
		{"GET", "/certificates/web/policy", "GetCertificatePolicy"},
		{"PATCH", "/certificates/web/policy", "UpdateCertificatePolicy"},
		{"DELETE", "/certificates/web", "DeleteCertificate"},
		{"GET", "/certificates/issuers", "ListIssuers"},
		{"PUT", "/certificates/issuers/Self", "SetIssuer"},
		{"GET", "/deletedcertificates", "ListDeletedCertificates"},
		{"GET", "/deletedcertificates/web", "GetDeletedCertificate"},
		{"DELETE", "/deletedcertificates/web", "PurgeDeletedCertificate"},
		{"POST", "/deletedcertificates/web/recover", "RecoverDeletedCertificate"},
		{"GET", "/secrets/web/0123456789abcdef0123456789abcdef", "GetSecret"},
		{"GET", "/prefix/secrets/web/0123456789abcdef0123456789abcdef", "GetSecret"},
		{"GET", "/", "Other"},
		{"GET", "/keys/k", "Other"},
		{"PUT", "/certificates/web/x/y/z", "Other"},
	}
	for _, tt := range tests {
		if got := operationName(tt.method, tt.path); got != tt.want {
			t.Errorf("%s %s = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	base := Config{
		VaultURL: "https://v.vault.azure.net/",
		Auth:     AuthConfig{Method: AuthClientSecret, TenantID: "t", ClientID: "c", ClientSecret: "s3cr3t-value"},
	}
	fp := base.Fingerprint()
	if strings.Contains(fp, "s3cr3t") || len(fp) != 64 {
		t.Fatalf("fingerprint %q", fp)
	}
	same := base
	same.RequestsPerSecond, same.Burst, same.SetsHostBudget = 5, 2, true // budgets do not rebuild clients
	if same.Fingerprint() != fp {
		t.Error("rate limit changed the fingerprint")
	}
	listed := base
	listed.AllowedHosts = []string{"V.vault.azure.net", "login.example:8443"}
	reordered := base
	reordered.AllowedHosts = []string{"login.EXAMPLE:8443", "v.vault.azure.net:443", "v.vault.azure.net"}
	if listed.Fingerprint() != reordered.Fingerprint() {
		t.Error("the order, case or default port of AllowedHosts changed the fingerprint")
	}
	for name, mut := range map[string]func(*Config){
		"secret":    func(c *Config) { c.Auth.ClientSecret = "other" },
		"tenant":    func(c *Config) { c.Auth.TenantID = "t2" },
		"client":    func(c *Config) { c.Auth.ClientID = "c2" },
		"method":    func(c *Config) { c.Auth.Method = AuthManagedIdentity },
		"vault":     func(c *Config) { c.VaultURL = "https://w.vault.azure.net/" },
		"authority": func(c *Config) { c.Cloud.AuthorityHost = "https://login.example/" },
		"ca":        func(c *Config) { c.Cloud.CABundle = []byte("x") },
		"cert":      func(c *Config) { c.Auth.ClientCertificate = []byte("x") },
		"assertion": func(c *Config) { c.Auth.AssertionKey = "ns/sa" },
		"verify":    func(c *Config) { c.Cloud.DisableChallengeResourceVerification = true },
		"allowed":   func(c *Config) { c.AllowedHosts = []string{"v.vault.azure.net"} },
		"invalid":   func(c *Config) { c.AllowedHosts = []string{"https://v/"} },
	} {
		c := base
		mut(&c)
		if c.Fingerprint() == fp {
			t.Errorf("%s change kept the fingerprint", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{VaultURL: "http://v.vault.azure.net/"},
		{VaultURL: "https:///"},
		{VaultURL: "https://v.vault.azure.net/", Auth: AuthConfig{Method: AuthClientSecret, ClientID: "c"}},
		{VaultURL: "https://v.vault.azure.net/", Auth: AuthConfig{Method: "Password"}},
	}
	for i, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%d: want ErrInvalidConfig, got %v", i, err)
		}
	}
	ok := Config{VaultURL: "https://V.vault.azure.net:8443/", Auth: AuthConfig{Method: AuthManagedIdentity}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if h, _ := VaultHost(ok.VaultURL); h != "v.vault.azure.net:8443" {
		t.Fatalf("host %q", h)
	}
}

func TestFactoryConfigErrors(t *testing.T) {
	f := NewFactory(FactoryOptions{})
	if _, err := f.Client("k", Config{VaultURL: "https://v.vault.azure.net/", Cloud: CloudConfig{CABundle: []byte("not pem")},
		Auth: AuthConfig{Method: AuthClientSecret, TenantID: "t", ClientID: "c", ClientSecret: "s"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad CA bundle: %v", err)
	}
	if _, err := f.Client("k", Config{VaultURL: "https://v.vault.azure.net/",
		Auth: AuthConfig{Method: AuthClientCertificate, TenantID: "t", ClientID: "c", ClientCertificate: []byte("garbage")}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad client certificate: %v", err)
	}
	if _, err := f.Client("k", Config{VaultURL: "https://v.vault.azure.net/",
		Auth: AuthConfig{Method: AuthWorkloadIdentity, TenantID: "t", ClientID: "c"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("workload identity without assertion: %v", err)
	}
	if _, err := f.Client("", Config{VaultURL: "https://v.vault.azure.net/"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty key: %v", err)
	}
}

func TestSecretStringRedacts(t *testing.T) {
	s := &Secret{Version: "v", ContentType: "application/x-pem-file", Value: "-----BEGIN PRIVATE KEY-----"}
	for _, out := range []string{s.String(), s.GoString()} {
		if strings.Contains(out, "PRIVATE") {
			t.Fatalf("value leaked: %s", out)
		}
	}
}

func TestCredentialConstruction(t *testing.T) {
	cloud := CloudConfig{AuthorityHost: "https://login.example", DisableInstanceDiscovery: true}
	for _, auth := range []AuthConfig{
		{Method: AuthManagedIdentity},
		{Method: AuthManagedIdentity, ClientID: "11111111-2222-3333-4444-555555555555"},
		{Method: AuthClientSecret, TenantID: "t", ClientID: "c", ClientSecret: "s"},
		{Method: AuthDefault, TenantID: "72f988bf-0000-4000-8000-00000000fa4e"},
	} {
		cred, err := NewCredential(auth, cloud, nil)
		if err != nil {
			t.Errorf("%s: %v", auth.Method, err)
			continue
		}
		if _, ok := cred.(*markedCredential); !ok {
			t.Errorf("%s: credential errors would not be classified", auth.Method)
		}
	}
	if _, err := NewCredential(AuthConfig{Method: AuthClientSecret, TenantID: "t", ClientID: "c"}, cloud, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty secret: %v", err)
	}
}
