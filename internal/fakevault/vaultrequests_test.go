package fakevault_test

import (
	"testing"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// VaultRequests counts what the vault's budget pays for, not the identity provider's requests or the Throttled
// sub-count.
func TestVaultRequests(t *testing.T) {
	counts := map[string]int{
		fakevault.OpGetCertificate: 10, fakevault.OpGetSecret: 5, fakevault.OpChallenge: 2,
		fakevault.OpToken: 7, fakevault.OpDiscovery: 3, fakevault.OpManagedIdentityToken: 4, fakevault.OpThrottled: 1,
	}
	if got := fakevault.VaultRequests(counts); got != 17 {
		t.Fatalf("VaultRequests = %d, want 17", got)
	}
}
