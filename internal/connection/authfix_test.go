package connection

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// TestAuthenticationFix: the fix is chosen from Entra ID's error codes, a managed identity endpoint's answer or a
// failed TokenRequest, never from the AADSTS text alone (a hostile authority can write any text).
func TestAuthenticationFix(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"wrong secret by code", &keyvault.AuthenticationError{Code: "invalid_client", EntraCodes: []int{7000215}}, "client secret in the connection's Secret is wrong"},
		{"unknown first code, known second", &keyvault.AuthenticationError{EntraCodes: []int{1, 700016}}, "no application with that clientID"},
		{"AADSTS text without codes", &keyvault.AuthenticationError{Message: "AADSTS7000215: Invalid client secret provided."}, "check tenantID, clientID and the credential"},
		{"managed identity endpoint", &keyvault.AuthenticationError{Message: "Unable to load the proper Managed Identity."}, "no identity with spec.auth.managedIdentity.clientID"},
		{"TokenRequest refused", &keyvault.AuthenticationError{Err: fmt.Errorf("assertion: %w",
			&serviceAccountTokenError{namespace: "ns", name: "app", err: errors.New("forbidden")})}, "grant the controller create on serviceaccounts/token"},
		{"anything else", errors.New("dial tcp: i/o timeout"), "check tenantID, clientID and the credential"},
	}
	for _, tt := range tests {
		if got := AuthenticationFix(tt.err); !strings.Contains(got, tt.want) {
			t.Errorf("%s: fix %q, want it to contain %q", tt.name, got, tt.want)
		}
	}
}
