package connection

import (
	"errors"
	"strings"

	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// managedIdentityFix is the fix when the managed identity endpoint does not know the requested identity.
const managedIdentityFix = "the managed identity endpoint of the controller's node has no identity with spec.auth.managedIdentity.clientID: " +
	"assign that user-assigned identity to the nodes the controller runs on (AKS: the node pool's VM scale set, or use the kubelet identity's client ID), " +
	"check that clientID is the identity's client ID (not its object or resource ID), or omit clientID to use the system-assigned identity"

// entraFixes maps Entra ID error codes (AADSTS numbers) to what to fix.
var entraFixes = map[int]string{
	7000215: "the client secret in the connection's Secret is wrong: store the secret's value (not its ID) from the application's Certificates & secrets page",
	7000222: "the client secret has expired: create a new one for the application and update the connection's Secret",
	700016:  "no application with that clientID exists in the tenant: check clientID and tenantID (and cloud.authorityHost for sovereign clouds)",
	90002:   "the tenant does not exist in this cloud: check tenantID and cloud.authorityHost",
	700211:  "the ServiceAccount token's issuer matches none of the application's federated credentials: set the federated credential's issuer to the cluster's OIDC issuer URL exactly (az aks show --query oidcIssuerProfile.issuerUrl)",
	700212:  "the application's federated credential must have audience api://AzureADTokenExchange",
	70021:   "add a federated credential to the application (or user-assigned identity) with the cluster's OIDC issuer and subject system:serviceaccount:<namespace>:<serviceaccount>, exactly as shown above",
	700024:  "the assertion is outside its validity period: check the clocks of the cluster and the ServiceAccount token lifetime",
	50166:   "Entra ID could not read the cluster's OIDC signing keys: the issuer's /.well-known/openid-configuration and JWKS must be publicly reachable",
	700027:  "the assertion's signature did not verify: for a client certificate, upload that certificate to the application; for workload identity, make sure the cluster's published OIDC keys are current",
}

// managedIdentityAnswers are what managed identity endpoints answer for an identity they do not have: they send
// no error code, so their text is all there is (App Service's 400 body, IMDS's 400 body, azidentity's IMDS message).
var managedIdentityAnswers = []string{"Unable to load the proper Managed Identity", "Identity not found", "the requested identity isn't assigned"}

// AuthenticationFix names the fix for a token failure (keyvault.IsAuthentication): from Entra ID's error codes,
// the managed identity endpoint's answer, or a failed ServiceAccount token request; a general hint otherwise.
func AuthenticationFix(err error) string {
	var ae *keyvault.AuthenticationError
	if errors.As(err, &ae) {
		for _, code := range ae.EntraCodes {
			if fix, ok := entraFixes[code]; ok {
				return fix
			}
		}
	}
	var tokenErr *serviceAccountTokenError
	if errors.As(err, &tokenErr) {
		return "grant the controller create on serviceaccounts/token, and check the ServiceAccount exists"
	}
	msg := err.Error()
	if ae != nil && ae.Message != "" {
		msg = ae.Message
	}
	for _, answer := range managedIdentityAnswers {
		if strings.Contains(msg, answer) {
			return managedIdentityFix
		}
	}
	return "check tenantID, clientID and the credential (client secret or certificate Secret, or the ServiceAccount's federated credential)"
}
