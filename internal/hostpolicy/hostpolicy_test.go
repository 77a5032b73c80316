package hostpolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckVault(t *testing.T) {
	p := Default()
	p.VaultDomains = append(p.VaultDomains, "127.0.0.1:8443", "kv.example.internal", "127.0.0.2:*")
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"https://shop.vault.azure.net/", true},
		{"https://SHOP.Vault.Azure.Net", true},
		{"https://shop.vault.azure.net:443/", true},
		{"https://shop.vault.azure.net:8443/", false}, // another port is another service
		{"https://hsm.managedhsm.azure.net/", true},
		{"https://gov.vault.usgovcloudapi.net/", true},
		{"https://cn.vault.azure.cn/", true},
		{"https://vault.azure.net.evil.example/", false},
		{"https://evilvault.azure.net/", false}, // suffix without the dot
		{"https://127.0.0.1:8443/", true},
		{"https://127.0.0.1:9443/", false},
		{"https://a.kv.example.internal/", true},
		{"http://shop.vault.azure.net/", false},
		{"https://user@shop.vault.azure.net/", false},
		{"https://10.0.0.1/", false},
		{"https://[::ffff:127.0.0.1%25x.vault.azure.net]/", false}, // a zone must not pass for a subdomain
		{"https://[::1]:443/", false},
		{"https://127.0.0.2:1234/", true}, // 127.0.0.2:*
		{"https://x.127.0.0.2:1234/", true},
	} {
		_, err := p.CheckVault(tc.url)
		if (err == nil) != tc.want {
			t.Errorf("CheckVault(%q) = %v, want allowed=%v", tc.url, err, tc.want)
		}
	}
}

func TestCheckAuthority(t *testing.T) {
	p := Default()
	p.AuthorityHosts = append(p.AuthorityHosts, "https://127.0.0.1:9443/")
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"", true}, // Azure public
		{"https://login.microsoftonline.com/", true},
		{"https://login.microsoftonline.us", true},
		{"https://login.chinacloudapi.cn/", true},
		{"https://127.0.0.1:9443/", true},
		{"https://127.0.0.1:9444/", false},
		{"https://x.login.microsoftonline.com/", false}, // authorities are exact hosts
		{"https://login.microsoftonline.com.evil.example/", false},
		{"https://attacker.example/", false},
	} {
		_, err := p.CheckAuthority(tc.url)
		if (err == nil) != tc.want {
			t.Errorf("CheckAuthority(%q) = %v, want allowed=%v", tc.url, err, tc.want)
		}
	}
}

func TestErrorNamesTheFlag(t *testing.T) {
	_, err := Default().CheckVault("https://attacker.example/")
	var he *Error
	if !errors.As(err, &he) || he.Flag != FlagVaultDomains {
		t.Fatalf("want *Error naming %s, got %v", FlagVaultDomains, err)
	}
	for _, want := range []string{`"attacker.example:443"`, FlagVaultDomains, "hostPolicy.vaultDomains", "vault.azure.net"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	_, err = Default().CheckAuthority("https://attacker.example/")
	if !strings.Contains(err.Error(), FlagAuthorityHosts) {
		t.Errorf("message %q lacks %s", err, FlagAuthorityHosts)
	}
}

func TestIsAzureAuthority(t *testing.T) {
	for host, want := range map[string]bool{
		"login.microsoftonline.com:443": true,
		"login.microsoftonline.com":     true,
		"login.microsoftonline.com:444": false,
		"127.0.0.1:9443":                false,
		"adfs.example:443":              false,
	} {
		if got := IsAzureAuthority(host); got != want {
			t.Errorf("IsAzureAuthority(%q) = %v", host, got)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Policy{VaultDomains: []string{"vault.azure.net/path"}}).Validate(); err == nil {
		t.Fatal("an entry with a path must be refused")
	}
}
