// Package hostpolicy decides which vault and Entra ID authority hosts a namespaced VaultConnection may send
// credentials to. Cluster admins set the lists (controller flags, Helm values); tenants only choose within them.
package hostpolicy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultVaultDomains are the Key Vault and Managed HSM DNS suffixes of Azure's public and sovereign clouds.
var DefaultVaultDomains = []string{
	"vault.azure.net", "managedhsm.azure.net", // Azure public
	"vault.azure.cn", "managedhsm.azure.cn", // Azure China
	"vault.usgovcloudapi.net", "managedhsm.usgovcloudapi.net", // Azure US Government
}

// DefaultAuthorityHosts are the Entra ID authorities of the same clouds.
var DefaultAuthorityHosts = []string{
	"login.microsoftonline.com",        // Azure public
	"login.chinacloudapi.cn",           // Azure China
	"login.partner.microsoftonline.cn", // Azure China (new name)
	"login.microsoftonline.us",         // Azure US Government
}

// PublicAuthority is the authority a connection that names none uses.
const PublicAuthority = "https://login.microsoftonline.com/"

// Policy is the admin's allow-list for namespaced connections.
type Policy struct {
	// VaultDomains are DNS suffixes (or exact hosts): a vault host is allowed when it equals an entry or ends
	// with "." plus an entry. An entry without a port matches only port 443; "host:*" matches any port.
	VaultDomains []string
	// AuthorityHosts are exact hosts (or https URLs, of which only the host counts); no port means 443, and
	// "host:*" any port.
	AuthorityHosts []string
}

// Default is the policy with the Azure clouds' domains and authorities.
func Default() Policy {
	return Policy{VaultDomains: append([]string(nil), DefaultVaultDomains...), AuthorityHosts: append([]string(nil), DefaultAuthorityHosts...)}
}

// Error says why a host is refused and which controller flag would allow it.
type Error struct {
	// Host is the refused host (with its port).
	Host string
	// Flag is the controller flag that lists the allowed hosts.
	Flag string
	// Allowed is the list in force.
	Allowed []string
	// What is "vault" or "authority".
	What string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("%s host %q is not allowed for a VaultConnection: the controller allows only %s (flag %s, Helm value %s); ask the cluster admin to add it, or to offer this vault through a ClusterVaultConnection",
		e.What, e.Host, strings.Join(e.Allowed, ", "), e.Flag, helmValue(e.Flag))
}

// Flag names, shared with main.go and the docs.
const (
	// FlagVaultDomains lists the vault domains.
	FlagVaultDomains = "--allowed-vault-domains"
	// FlagAuthorityHosts lists the authority hosts.
	FlagAuthorityHosts = "--allowed-authority-hosts"
)

func helmValue(flag string) string {
	if flag == FlagVaultDomains {
		return "hostPolicy.vaultDomains"
	}
	return "hostPolicy.authorityHosts"
}

// CheckVault returns the vault URL's host (host:port) when the policy allows it, else an *Error.
func (p Policy) CheckVault(vaultURL string) (string, error) {
	return check(vaultURL, p.VaultDomains, true, FlagVaultDomains, "vault")
}

// CheckAuthority returns the authority's host (host:port) when the policy allows it, else an *Error. An empty
// authority means Azure public.
func (p Policy) CheckAuthority(authority string) (string, error) {
	if authority == "" {
		authority = PublicAuthority
	}
	return check(authority, p.AuthorityHosts, false, FlagAuthorityHosts, "authority")
}

// check returns raw's host when an entry allows it (with subdomains, or exactly), else an *Error naming flag.
func check(raw string, entries []string, subdomains bool, flag, what string) (string, error) {
	host, err := httpsHost(raw)
	if err != nil {
		return "", err
	}
	for _, entry := range entries {
		if matches(host, entry, subdomains) {
			return host, nil
		}
	}
	return "", &Error{Host: host, Flag: flag, Allowed: entries, What: what}
}

// IsAzureAuthority reports whether host is one of Entra ID's own authorities, for which instance discovery
// works. For any other authority the admin allowed, discovery would only ask login.microsoftonline.com about
// a host it does not know, so the controller turns it off.
func IsAzureAuthority(host string) bool {
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, "443"
	}
	if port != "443" {
		return false
	}
	switch strings.ToLower(h) {
	case "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn",
		"login.windows.net", "login.microsoft.com", "sts.windows.net", "login-us.microsoftonline.com", "login.usgovcloudapi.net":
		return true
	}
	return false
}

// matches reports whether host (lower-case host:port) is entry, or with subdomains a host under it. An entry's
// port "*" matches any port (test rigs whose fake vaults listen on random ports).
func matches(host, entry string, subdomains bool) bool {
	e, err := normalize(entry)
	if err != nil {
		return false
	}
	name, port, _ := net.SplitHostPort(host)
	eName, ePort, _ := net.SplitHostPort(e)
	if ePort != "*" && ePort != port {
		return false
	}
	return name == eName || subdomains && strings.HasSuffix(name, "."+eName)
}

// httpsHost returns the lower-case host:port of an https URL (port 443 when absent). The host must be a DNS
// name or an IPv4 address: IPv6 literals are refused, since a zone ("[::1%25x.vault.azure.net]") would let an
// address pass for a name under an allowed domain.
func httpsHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" || u.User != nil || !plainHostname(u.Hostname()) {
		return "", fmt.Errorf("%q is not an https URL with a DNS name or IPv4 address as host", raw)
	}
	return withPort(u.Host), nil
}

// plainHostname reports whether h holds only letters, digits, dots and hyphens.
func plainHostname(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// normalize turns an entry ("host", "host:port" or an https URL) into lower-case host:port.
func normalize(entry string) (string, error) {
	entry = strings.TrimSpace(entry)
	if strings.Contains(entry, "://") {
		return httpsHost(entry)
	}
	entry = strings.TrimPrefix(strings.TrimPrefix(entry, "*"), ".")
	if entry == "" || strings.ContainsAny(entry, "/?#@ ") {
		return "", fmt.Errorf("%q is not a host", entry)
	}
	return withPort(entry), nil
}

func withPort(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if _, _, err := net.SplitHostPort(host); err != nil {
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	return host
}

// Validate reports entries that are not hosts, so a typo in a flag fails at start-up rather than refusing
// every connection.
func (p Policy) Validate() error {
	for _, list := range [][]string{p.VaultDomains, p.AuthorityHosts} {
		for _, e := range list {
			if _, err := normalize(e); err != nil {
				return err
			}
		}
	}
	return nil
}
