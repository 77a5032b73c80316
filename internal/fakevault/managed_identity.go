package fakevault

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// OpManagedIdentityToken counts requests to the managed identity endpoint (ManagedIdentityEndpoint).
const OpManagedIdentityToken = "ManagedIdentityToken"

// Managed identity endpoint.
//
// The fake serves the App Service managed identity protocol (api-version 2019-08-01), the one source
// azidentity selects from its environment that works against an arbitrary https URL: with
// IDENTITY_ENDPOINT and IDENTITY_HEADER set (and IDENTITY_SERVER_THUMBPRINT unset),
// azidentity.ManagedIdentityCredential sends
//
//	GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=https://vault.azure.net[&client_id=...]
//	X-IDENTITY-HEADER: {IDENTITY_HEADER}
//
// through the pipeline built from ClientOptions.Transport, so the fake's own CA is trusted like it is
// for the vault. IMDS (a fixed http://169.254.169.254 URL), Azure Arc (fixed key file directory),
// Cloud Shell and Azure ML are not served; Service Fabric pins the server certificate's thumbprint
// instead of trusting a CA.
//
// Answers, as the real endpoint gives them: 200 {"access_token","expires_on" (Unix seconds as a
// string),"resource","token_type":"Bearer","client_id"}; an identity that is not assigned (unknown
// client_id, or no system-assigned identity) gets 400 {"statusCode":400,"message":"Unable to load
// the proper Managed Identity.","correlationId":...} (seen in public reports). A missing or wrong
// X-IDENTITY-HEADER gets 401 with the same body shape (inferred).

const (
	managedIdentityPath     = "/msi/token"
	msgManagedIdentityUnset = "Unable to load the proper Managed Identity."
)

// ManagedIdentityEndpoint is the URL to put in IDENTITY_ENDPOINT: "https://127.0.0.1:PORT/msi/token".
func (s *Server) ManagedIdentityEndpoint() string {
	return strings.TrimSuffix(s.baseURL, "/") + managedIdentityPath
}

// ManagedIdentityHeader is the value to put in IDENTITY_HEADER; requests without it are refused.
func (s *Server) ManagedIdentityHeader() string { return s.auth.miHeader }

// ManagedIdentityEnv is the environment that makes azidentity.ManagedIdentityCredential use this
// server's managed identity endpoint (App Service source): IDENTITY_ENDPOINT and IDENTITY_HEADER.
// The credential also needs ClientOptions.Transport trusting CAPEM. azidentity reads the variables
// when the credential is built and again on every token request.
func (s *Server) ManagedIdentityEnv() map[string]string {
	return map[string]string{
		"IDENTITY_ENDPOINT": s.ManagedIdentityEndpoint(),
		"IDENTITY_HEADER":   s.ManagedIdentityHeader(),
	}
}

// AddManagedIdentity assigns a user-assigned managed identity with this client ID to "the host": the
// managed identity endpoint issues vault tokens for it (appid = clientID), which Restrict and the
// vault's token checks treat like any other identity's.
func (s *Server) AddManagedIdentity(clientID string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.managed[clientID] = true
}

// RemoveManagedIdentity unassigns a user-assigned managed identity; tokens already issued stay valid.
func (s *Server) RemoveManagedIdentity(clientID string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	delete(s.auth.managed, clientID)
}

// SetSystemAssignedIdentity gives "the host" a system-assigned managed identity whose tokens carry
// appid clientID, asked for without client_id. An empty clientID removes it (the default).
func (s *Server) SetSystemAssignedIdentity(clientID string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.systemAssigned = clientID
}

// managedIdentityFor returns the client ID the endpoint issues a token for: the requested user-assigned
// one when assigned, or the system-assigned one when none is requested; "" when the host has none.
func (a *authority) managedIdentityFor(requested string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if requested == "" {
		return a.systemAssigned
	}
	for id := range a.managed {
		// Client IDs are GUIDs; the service compares them case-insensitively (inferred).
		if strings.EqualFold(id, requested) {
			return id
		}
	}
	return ""
}

// writeManagedIdentityError writes the App Service managed identity error shape.
func writeManagedIdentityError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Server", "Kestrel")
	writeJSON(w, status, map[string]any{"statusCode": status, "message": message, "correlationId": newUUID()})
}

// serveManagedIdentity answers GET /msi/token like the App Service managed identity endpoint.
func (s *Server) serveManagedIdentity(w http.ResponseWriter, r *http.Request) {
	s.counts.add(OpManagedIdentityToken)
	if r.Method != http.MethodGet {
		writeManagedIdentityError(w, http.StatusMethodNotAllowed, "Only GET is supported.") // inferred
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(s.auth.miHeader)) != 1 {
		writeManagedIdentityError(w, http.StatusUnauthorized, "The X-IDENTITY-HEADER header is missing or invalid.") // inferred
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		writeManagedIdentityError(w, http.StatusBadRequest, "The api-version query parameter is required.") // inferred
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/.default")
	if resource == "" {
		writeManagedIdentityError(w, http.StatusBadRequest, "The resource query parameter is required.") // inferred
		return
	}
	if q.Get("mi_res_id") != "" || q.Get("object_id") != "" || q.Get("principal_id") != "" {
		// The fake knows identities by client ID only.
		writeManagedIdentityError(w, http.StatusBadRequest, msgManagedIdentityUnset)
		return
	}
	clientID := s.auth.managedIdentityFor(q.Get("client_id"))
	if clientID == "" {
		writeManagedIdentityError(w, http.StatusBadRequest, msgManagedIdentityUnset)
		return
	}
	tok, err := s.auth.issue(clientID, resource)
	if err != nil {
		writeManagedIdentityError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.auth.mu.Lock()
	life := s.auth.tokenLifetime
	s.auth.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_on":   fmt.Sprint(time.Now().Add(life).Unix()),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    clientID,
	})
}
