package fakevault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// VaultResource is the resource (audience) of Key Vault tokens, as named by the 401 challenge.
const VaultResource = "https://vault.azure.net"

// federatedAudience is the audience of workload identity assertions.
const federatedAudience = "api://AzureADTokenExchange"

type federatedCredential struct{ issuer, subject string }

// authority is the Entra-ID-like token service: identities, token issuance and validation.
type authority struct {
	tenant string
	key    *ecdsa.PrivateKey
	kid    string

	mu            sync.Mutex
	secrets       map[string][]string
	certs         map[string][]*x509.Certificate
	federated     map[string][]federatedCredential
	issuerKeys    map[string][]issuerKey
	restrictions  map[string]map[string]bool
	tokenLifetime time.Duration
	generation    int

	// managed holds the user-assigned managed identities (client IDs) of the managed identity endpoint,
	// systemAssigned the system-assigned one's client ID ("" for none), miHeader its IDENTITY_HEADER.
	managed        map[string]bool
	systemAssigned string
	miHeader       string
}

// accessClaims are the claims of the access tokens the fake authority issues (v1 app tokens).
type accessClaims struct {
	jwt.RegisteredClaims
	AppID    string `json:"appid"`
	AppIDAcr string `json:"appidacr,omitempty"`
	TenantID string `json:"tid"`
	OID      string `json:"oid"`
	IDTyp    string `json:"idtyp,omitempty"`
	Ver      string `json:"ver"`
	Gen      int    `json:"fakevault_gen"`
}

func newAuthority(tenant string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &authority{
		tenant:        tenant,
		key:           key,
		kid:           newHexID()[:27],
		secrets:       map[string][]string{},
		certs:         map[string][]*x509.Certificate{},
		federated:     map[string][]federatedCredential{},
		issuerKeys:    map[string][]issuerKey{},
		restrictions:  map[string]map[string]bool{},
		tokenLifetime: time.Hour,
		managed:       map[string]bool{},
		miHeader:      newHexID(),
	}, nil
}

// AddClientSecret registers a service principal that authenticates with a client secret.
// A client may have several secrets.
func (s *Server) AddClientSecret(clientID, secret string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.secrets[clientID] = append(s.auth.secrets[clientID], secret)
}

// AddClientCertificate registers a service principal that authenticates with a client assertion
// signed by cert's key (what azidentity.ClientCertificateCredential sends: a JWT with an x5t#S256
// or x5t header). The signature, aud (the token endpoint), iss == sub == clientID and exp are checked.
func (s *Server) AddClientCertificate(clientID string, cert *x509.Certificate) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.certs[clientID] = append(s.auth.certs[clientID], cert)
}

// AddFederatedCredential registers a workload identity federation: a client assertion is accepted for
// clientID when its iss and sub equal issuer and subject (case-sensitive, as Entra ID compares them), its
// aud is api://AzureADTokenExchange, it has not expired, and its signature verifies against a key of the
// issuer registered with AddFederatedIssuer or AddFederatedIssuerKeys (Entra ID fetches those from the
// issuer's OIDC discovery document; the fake is told them). Wrong assertions get the real AADSTS codes:
// 700211 (issuer), 70021 (subject), 700212 (audience), 700024 (expiry), 700027 (signature) and 50166 (no
// keys known for the issuer).
func (s *Server) AddFederatedCredential(clientID, issuer, subject string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.federated[clientID] = append(s.auth.federated[clientID], federatedCredential{issuer, subject})
}

// issuerKey is one verification key of a federated issuer; kid is empty when the key set gave none.
type issuerKey struct {
	kid string
	key crypto.PublicKey
}

// AddFederatedIssuer sets the signing keys of a federated issuer from its JWKS document (what the issuer
// serves at the jwks_uri of its /.well-known/openid-configuration; for Kubernetes, /openid/v1/jwks). RSA
// and EC (P-256, P-384, P-521) keys are read; other keys are skipped. Calling it again replaces the keys,
// as a key rotation at the issuer does.
func (s *Server) AddFederatedIssuer(issuer string, jwks []byte) error {
	keys, err := parseJWKS(jwks)
	if err != nil {
		return fmt.Errorf("fakevault: JWKS of %s: %w", issuer, err)
	}
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.issuerKeys[issuer] = keys
	return nil
}

// AddFederatedIssuerKeys sets the signing keys (*rsa.PublicKey or *ecdsa.PublicKey) of a federated issuer
// directly, for tests that sign their own assertions. It replaces earlier keys of that issuer.
func (s *Server) AddFederatedIssuerKeys(issuer string, keys ...crypto.PublicKey) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	ks := make([]issuerKey, 0, len(keys))
	for _, k := range keys {
		ks = append(ks, issuerKey{key: k})
	}
	s.auth.issuerKeys[issuer] = ks
}

// parseJWKS reads the RSA and EC keys of a JSON Web Key Set.
func parseJWKS(doc []byte) ([]issuerKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, err
	}
	b64 := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(b) == 0 {
			return nil, errors.New("bad base64url integer")
		}
		return new(big.Int).SetBytes(b), nil
	}
	var keys []issuerKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err := b64(k.N)
			if err != nil {
				return nil, fmt.Errorf("key %q: n: %w", k.Kid, err)
			}
			e, err := b64(k.E)
			if err != nil || !e.IsInt64() {
				return nil, fmt.Errorf("key %q: bad e", k.Kid)
			}
			keys = append(keys, issuerKey{kid: k.Kid, key: &rsa.PublicKey{N: n, E: int(e.Int64())}})
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				continue
			}
			x, err := b64(k.X)
			if err != nil {
				return nil, fmt.Errorf("key %q: x: %w", k.Kid, err)
			}
			y, err := b64(k.Y)
			if err != nil {
				return nil, fmt.Errorf("key %q: y: %w", k.Kid, err)
			}
			keys = append(keys, issuerKey{kid: k.Kid, key: &ecdsa.PublicKey{Curve: curve, X: x, Y: y}})
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no RSA or EC signing key")
	}
	return keys, nil
}

// RemoveClientSecret withdraws one client secret of clientID (a rotated-out secret); the others stay.
func (s *Server) RemoveClientSecret(clientID, secret string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.secrets[clientID] = slices.DeleteFunc(s.auth.secrets[clientID], func(v string) bool {
		return subtle.ConstantTimeCompare([]byte(v), []byte(secret)) == 1
	})
}

// Restrict limits clientID to the named certificates (case-insensitive): any other certificate,
// and vault-wide operations such as listing, get 403 Forbidden with innererror ForbiddenByRbac and
// the real service's "Caller is not authorized to perform action on resource..." message.
// Calling it again replaces the list; with no names the identity can do nothing.
func (s *Server) Restrict(clientID string, certificateNames ...string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	m := map[string]bool{}
	for _, n := range certificateNames {
		m[strings.ToLower(n)] = true
	}
	s.auth.restrictions[clientID] = m
}

// Unrestrict removes clientID's restriction.
func (s *Server) Unrestrict(clientID string) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	delete(s.auth.restrictions, clientID)
}

// SetTokenLifetime sets the lifetime of tokens issued from now on (default 1 h, real clock).
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.tokenLifetime = d
}

// RevokeTokens invalidates every token issued so far: the vault answers 401 to them.
func (s *Server) RevokeTokens() {
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	s.auth.generation++
}

// IssueToken returns a vault access token for clientID without a token request (for raw HTTP tests).
func (s *Server) IssueToken(clientID string) (string, error) {
	return s.auth.issue(clientID, VaultResource)
}

// IssueTokenFor returns an access token for clientID whose audience is resource, without a token request: what
// Entra ID gives a caller of another API (for example Event Grid calling a webhook protected by an app whose
// application ID URI is resource). It is signed like every token of the authority, by the ES256 key its JWKS
// (/{tenant}/discovery/v2.0/keys) publishes, with iss https://sts.windows.net/{tenant}/ and appid clientID. The
// vault refuses such a token unless resource is its own audience.
func (s *Server) IssueTokenFor(clientID, resource string) (string, error) {
	return s.auth.issue(clientID, resource)
}

func (a *authority) allowed(clientID, name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.restrictions[clientID]
	if !ok {
		return true
	}
	return name != "" && m[strings.ToLower(name)]
}

func objectID(clientID string) string {
	h := sha256.Sum256([]byte("oid:" + clientID))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func (a *authority) issue(clientID, resource string) (string, error) {
	a.mu.Lock()
	life, gen := a.tokenLifetime, a.generation
	a.mu.Unlock()
	now := time.Now()
	c := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "https://sts.windows.net/" + a.tenant + "/",
			Subject:   objectID(clientID),
			Audience:  jwt.ClaimStrings{resource},
			IssuedAt:  jwt.NewNumericDate(now.Add(-5 * time.Minute)),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(life)),
			ID:        newHexID(),
		},
		AppID: clientID, AppIDAcr: "1", TenantID: a.tenant, OID: objectID(clientID),
		IDTyp: "app", Ver: "1.0", Gen: gen,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = a.kid
	return t.SignedString(a.key)
}

// validate checks an Authorization header; it returns the claims, or nil and the 401 message.
// resource is the audience the vault answering this request names in its challenge (see ChallengeResource);
// tokens for Key Vault's usual resource are accepted too.
func (a *authority) validate(authz, resource string) (*accessClaims, string) {
	scheme, tok, _ := strings.Cut(authz, " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, msgMissingToken
	}
	var c accessClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return &a.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired())
	switch {
	case err != nil && strings.Contains(err.Error(), "expired"):
		return nil, "AKV10032: Token is expired." // inferred text
	case err != nil:
		return nil, "AKV10021: Token could not be validated: " + err.Error() // inferred text
	case c.TenantID != a.tenant:
		return nil, "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/" + a.tenant + "/, found " + c.Issuer + "."
	case !slices.ContainsFunc([]string(c.Audience), func(aud string) bool {
		aud = strings.TrimSuffix(aud, "/")
		return aud == VaultResource || aud == resource
	}):
		return nil, fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", resource, strings.Join(c.Audience, ","))
	}
	a.mu.Lock()
	gen := a.generation
	a.mu.Unlock()
	if c.Gen != gen {
		return nil, "AKV10032: Token has been revoked." // fakevault-specific
	}
	return &c, ""
}

// serveAuthority serves the Entra-ID-like endpoints.
func (s *Server) serveAuthority(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	base := "https://" + r.Host + "/"
	switch {
	case len(parts) == 3 && parts[0] == "common" && parts[1] == "discovery" && parts[2] == "instance":
		s.counts.add(OpDiscovery)
		tenant := s.tenant
		if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil {
			if segs := strings.Split(strings.Trim(u.Path, "/"), "/"); len(segs) > 0 && segs[0] != "" {
				tenant = segs[0]
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"tenant_discovery_endpoint": base + tenant + "/v2.0/.well-known/openid-configuration",
			"api-version":               "1.1",
			"metadata": []map[string]any{{
				"preferred_network": r.Host, "preferred_cache": r.Host, "aliases": []string{r.Host},
			}},
		})
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		s.counts.add(OpDiscovery)
		if !s.knownTenant(parts[0]) {
			writeAADError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", parts[0]))
			return
		}
		t := parts[0]
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        base + t + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + t + "/oauth2/v2.0/authorize",
			"device_authorization_endpoint":         base + t + "/oauth2/v2.0/devicecode",
			"issuer":                                base + t + "/v2.0",
			"jwks_uri":                              base + t + "/discovery/v2.0/keys",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"tenant_region_scope":                   "WW",
			"cloud_instance_name":                   "fakevault",
		})
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		s.counts.add(OpDiscovery)
		pub := s.auth.key.PublicKey
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
			"kty": "EC", "use": "sig", "crv": "P-256", "kid": s.auth.kid, "alg": "ES256",
			"x": base64.RawURLEncoding.EncodeToString(pub.X.FillBytes(make([]byte, 32))),
			"y": base64.RawURLEncoding.EncodeToString(pub.Y.FillBytes(make([]byte, 32))),
		}}})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		s.handleToken(w, r, parts[0])
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found", "error_description": "fakevault: no such endpoint " + r.URL.Path})
	}
}

func (s *Server) knownTenant(t string) bool {
	return strings.EqualFold(t, s.tenant) || t == "organizations" || t == "common"
}

func writeAADError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": desc + "\r\nTrace ID: " + newUUID() + "\r\nCorrelation ID: " + newUUID() + "\r\nTimestamp: " + time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newUUID(),
		"correlation_id":    newUUID(),
	})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, tenant string) {
	s.counts.add(OpToken)
	f, finished := s.explicitFault(w, r, OpToken, "")
	if finished {
		return
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		code, msg := f.Code, f.Message
		if code == "" {
			code = "temporarily_unavailable"
		}
		if msg == "" {
			msg = "AADSTS50196: The server terminated an operation because it encountered a client request loop." // inferred
		}
		if f.Status == http.StatusTooManyRequests {
			s.counts.add(OpThrottled)
		}
		writeAADError(w, f.Status, code, 0, msg)
		return
	}
	if r.Method != http.MethodPost {
		writeAADError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "AADSTS900561: The endpoint only accepts POST requests.")
		return
	}
	if !strings.EqualFold(tenant, s.tenant) {
		writeAADError(w, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("AADSTS90002: Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAADError(w, http.StatusBadRequest, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
		return
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "client_credentials" {
		writeAADError(w, http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("AADSTS70003: The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID := form.Get("client_id")
	scope := form.Get("scope")
	resource, ok := strings.CutSuffix(strings.Fields(scope + " ")[0], "/.default")
	if scope == "" || !ok {
		writeAADError(w, http.StatusBadRequest, "invalid_scope", 1002012,
			fmt.Sprintf("AADSTS1002012: The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
		return
	}
	if !s.auth.knownClient(clientID) {
		writeAADError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, s.tenant))
		return
	}
	switch {
	case form.Get("client_secret") != "":
		if !s.auth.checkSecret(clientID, form.Get("client_secret")) {
			writeAADError(w, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
			return
		}
	case form.Get("client_assertion") != "":
		if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			writeAADError(w, http.StatusBadRequest, "invalid_request", 50027, "AADSTS50027: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.")
			return
		}
		if code, msg := s.auth.checkAssertion(clientID, tenant, form.Get("client_assertion")); code != 0 {
			writeAADError(w, http.StatusUnauthorized, "invalid_client", code, msg)
			return
		}
	default:
		writeAADError(w, http.StatusUnauthorized, "invalid_client", 7000216,
			"AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}
	tok, err := s.auth.issue(clientID, resource)
	if err != nil {
		writeAADError(w, http.StatusInternalServerError, "server_error", 0, err.Error())
		return
	}
	s.auth.mu.Lock()
	life := int(s.auth.tokenLifetime / time.Second)
	s.auth.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": tok,
	})
}

func (a *authority) knownClient(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.secrets[id]) > 0 || len(a.certs[id]) > 0 || len(a.federated[id]) > 0
}

func (a *authority) checkSecret(id, secret string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.secrets[id] {
		if subtle.ConstantTimeCompare([]byte(s), []byte(secret)) == 1 {
			return true
		}
	}
	return false
}

// checkAssertion verifies a client assertion; it returns 0 or an AADSTS code and message.
func (a *authority) checkAssertion(clientID, tenant, assertion string) (int, string) {
	a.mu.Lock()
	certs := slices.Clone(a.certs[clientID])
	feds := slices.Clone(a.federated[clientID])
	issuerKeys := make(map[string][]issuerKey, len(a.issuerKeys))
	for iss, ks := range a.issuerKeys {
		issuerKeys[iss] = ks
	}
	a.mu.Unlock()

	unverified, _, err := jwt.NewParser().ParseUnverified(assertion, jwt.MapClaims{})
	if err != nil {
		return 50027, "AADSTS50027: JWT token is invalid or malformed."
	}
	_, hasS256 := unverified.Header["x5t#S256"]
	_, hasX5T := unverified.Header["x5t"]
	if hasS256 || hasX5T {
		return a.checkCertAssertion(clientID, tenant, assertion, unverified, certs)
	}
	return checkFederatedAssertion(assertion, feds, issuerKeys)
}

func (a *authority) checkCertAssertion(clientID, tenant, assertion string, unverified *jwt.Token, certs []*x509.Certificate) (int, string) {
	var cert *x509.Certificate
	for _, c := range certs {
		s256 := sha256.Sum256(c.Raw)
		s1 := sha1.Sum(c.Raw)
		if thumbMatches(unverified.Header["x5t#S256"], s256[:]) || thumbMatches(unverified.Header["x5t"], s1[:]) {
			cert = c
			break
		}
	}
	if cert == nil {
		return 700027, fmt.Sprintf("AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%v']", unverified.Header["x5t#S256"])
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(*jwt.Token) (any, error) { return cert.PublicKey, nil },
		jwt.WithValidMethods([]string{"PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}),
		jwt.WithIssuer(clientID), jwt.WithSubject(clientID), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Minute))
	if err != nil {
		return 700027, "AADSTS700027: Client assertion failed signature validation or its claims are invalid: " + err.Error()
	}
	aud, _ := claims.GetAudience()
	for _, a := range aud {
		if u, err := url.Parse(a); err == nil && strings.EqualFold(strings.TrimSuffix(u.Path, "/"), "/"+tenant+"/oauth2/v2.0/token") {
			return 0, ""
		}
	}
	return 700021, fmt.Sprintf("AADSTS700021: Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials. Audience: %v", aud)
}

// checkFederatedAssertion verifies a workload identity assertion the way Entra ID does: the issuer must be
// one of the app's federated credentials, the signature must verify against that issuer's keys, and
// then expiry, audience and subject are checked. It returns 0 or an AADSTS code and message.
func checkFederatedAssertion(assertion string, feds []federatedCredential, issuerKeys map[string][]issuerKey) (int, string) {
	claims := jwt.MapClaims{}
	unverified, _, err := jwt.NewParser().ParseUnverified(assertion, claims)
	if err != nil {
		return 50027, "AADSTS50027: JWT token is invalid or malformed."
	}
	iss, _ := claims.GetIssuer()
	sub, _ := claims.GetSubject()
	aud, _ := claims.GetAudience()
	var subjects []string
	for _, f := range feds {
		if f.issuer == iss {
			subjects = append(subjects, f.subject)
		}
	}
	if len(subjects) == 0 {
		return 700211, fmt.Sprintf("AADSTS700211: No matching federated identity record found for presented assertion issuer '%s'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.", iss)
	}
	keys := issuerKeys[iss]
	if len(keys) == 0 {
		return 50166, fmt.Sprintf("AADSTS50166: Request to External OIDC endpoint failed. The signing keys of issuer '%s' could not be retrieved (fakevault: register them with AddFederatedIssuer).", iss)
	}
	kid, _ := unverified.Header["kid"].(string)
	verified := false
	for _, k := range keys {
		if kid != "" && k.kid != "" && k.kid != kid {
			continue
		}
		_, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return k.key, nil },
			jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
			jwt.WithoutClaimsValidation())
		if err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return 700027, fmt.Sprintf("AADSTS700027: Client assertion failed signature validation. [Reason - The key was not found in the signing keys of issuer '%s'. Key ID of the assertion: '%s']", iss, kid)
	}
	exp, _ := claims.GetExpirationTime()
	if exp == nil || exp.Before(time.Now().Add(-5*time.Minute)) {
		return 700024, "AADSTS700024: Client assertion is not within its valid time range."
	}
	if nbf, _ := claims.GetNotBefore(); nbf != nil && nbf.After(time.Now().Add(5*time.Minute)) {
		return 700024, "AADSTS700024: Client assertion is not within its valid time range."
	}
	if !slices.Contains([]string(aud), federatedAudience) {
		return 700212, fmt.Sprintf("AADSTS700212: No matching federated identity record found for presented assertion audience '%s'.", strings.Join(aud, ","))
	}
	if slices.Contains(subjects, sub) {
		return 0, ""
	}
	return 70021, fmt.Sprintf("AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. Please see https://learn.microsoft.com/entra/workload-id/workload-identity-federation for more information.", iss, sub, strings.Join(aud, ","))
}

func thumbMatches(h any, sum []byte) bool {
	s, ok := h.(string)
	if !ok || s == "" {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && subtle.ConstantTimeCompare(b, sum) == 1 {
			return true
		}
	}
	// some clients send hex
	return strings.EqualFold(s, fmt.Sprintf("%x", sum))
}
