package fakevault

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Operation names, as used by Fault.Operation and Count.
const (
	OpGetCertificate             = "GetCertificate"
	OpGetCertificateVersions     = "GetCertificateVersions"
	OpListCertificates           = "ListCertificates"
	OpGetSecret                  = "GetSecret"
	OpCreateCertificate          = "CreateCertificate"
	OpGetCertificateOperation    = "GetCertificateOperation"
	OpUpdateCertificateOperation = "UpdateCertificateOperation"
	OpDeleteCertificateOperation = "DeleteCertificateOperation"
	OpMergeCertificate           = "MergeCertificate"
	OpUpdateCertificate          = "UpdateCertificate"
	OpImportCertificate          = "ImportCertificate"
	OpDeleteCertificate          = "DeleteCertificate"
	OpGetDeletedCertificate      = "GetDeletedCertificate"
	OpListDeletedCertificates    = "ListDeletedCertificates"
	OpRecoverDeletedCertificate  = "RecoverDeletedCertificate"
	OpPurgeDeletedCertificate    = "PurgeDeletedCertificate"
	OpGetCertificatePolicy       = "GetCertificatePolicy"
	OpUpdateCertificatePolicy    = "UpdateCertificatePolicy"
	OpSetCertificateIssuer       = "SetCertificateIssuer"
	OpGetCertificateIssuer       = "GetCertificateIssuer"
	OpDeleteCertificateIssuer    = "DeleteCertificateIssuer"
	OpListCertificateIssuers     = "ListCertificateIssuers"
	// OpToken counts token requests at the authority (faults must name it explicitly).
	OpToken = "Token"
	// OpDiscovery counts OpenID configuration and instance discovery requests.
	OpDiscovery = "Discovery"
	// OpChallenge counts vault requests without Authorization (answered 401 with the challenge).
	OpChallenge = "Challenge"
	// OpUnauthorized counts vault requests whose token was rejected (401).
	OpUnauthorized = "Unauthorized"
	// OpThrottled counts 429 answers (injected or from limit mode), in addition to the operation.
	OpThrottled = "Throttled"
)

var nameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request, rt *route)

// route is a vault request resolved to an operation.
type route struct {
	op       string
	name     string
	version  string
	base     string // "https://host:port/" as the client addressed us
	clientID string
	handler  handlerFunc
}

func (s *Server) serveVault(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		s.counts.add(OpChallenge)
		name := ""
		if rt, e := resolve(r); e == nil {
			name = rt.name
		}
		f, finished := s.explicitFault(w, r, OpChallenge, name)
		if finished {
			return
		}
		if f != nil && f.Status != 0 {
			s.writeFaultStatus(w, "", f)
			return
		}
		s.writeChallenge(w, r, msgMissingToken)
		return
	}
	cl, msg := s.auth.validate(authz, ChallengeResource(r.Host))
	if cl == nil {
		s.counts.add(OpUnauthorized)
		s.writeChallenge(w, r, msg)
		return
	}
	rt, verr := resolve(r)
	if verr != nil {
		writeError(w, verr)
		return
	}
	rt.clientID = cl.AppID
	s.counts.addNamed(rt.op, rt.name)

	f, latency := s.faults.match(rt.op, rt.name, false)
	if latency > 0 && !s.sleep(r.Context(), latency) {
		return
	}
	if f != nil {
		s.applyFault(w, r, rt, f)
		return
	}
	s.dispatch(w, r, rt)
}

// dispatch runs limit mode, access control and the handler.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rt *route) {
	if limited, retry, send := s.faults.admit(time.Now()); limited {
		s.counts.add(OpThrottled)
		e := newError(http.StatusTooManyRequests, CodeThrottled, "", msgThrottled)
		if send {
			e.header = http.Header{"Retry-After": {retry}}
		}
		writeError(w, e)
		return
	}
	if !s.auth.allowed(rt.clientID, rt.name) {
		writeError(w, newError(http.StatusForbidden, CodeForbidden, InnerForbiddenByRbac,
			"%s", defaultMessage(http.StatusForbidden, InnerForbiddenByRbac, rt.clientID, s.tenant)))
		return
	}
	s.maybeAutoRenew()
	rt.handler(s, w, r, rt)
}

func (s *Server) writeChallenge(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate",
		`Bearer authorization="https://login.microsoftonline.com/`+s.tenant+`", resource="`+ChallengeResource(r.Host)+`"`)
	writeError(w, newError(http.StatusUnauthorized, CodeUnauthorized, "", "%s", msg))
}

// sleep waits d, or returns false when the request or the server ends first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

// resolve maps method and path to an operation.
func resolve(r *http.Request) (*route, *vaultError) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	p = strings.TrimSuffix(p, "/") // "/certificates/{n}/" is the latest version
	parts := strings.Split(p, "/")
	rt := &route{base: "https://" + r.Host + "/"}
	m := r.Method
	set := func(op string, h handlerFunc) (*route, *vaultError) {
		rt.op, rt.handler = op, h
		return rt, nil
	}
	notAllowed := errMethodNotAllowed(m)
	badPath := errBadParameter("The request URI is invalid: %s", r.URL.Path)
	coll := strings.ToLower(parts[0])
	if len(parts) >= 2 {
		rt.name = parts[1]
	}
	switch coll {
	case "certificates":
		if len(parts) >= 2 && strings.EqualFold(parts[1], "issuers") {
			rt.name = ""
			return resolveIssuers(rt, m, parts[2:])
		}
		if len(parts) >= 2 && strings.EqualFold(parts[1], "contacts") {
			return nil, errBadParameter("Certificate contacts are not supported by fakevault.")
		}
		if e := checkName("certificate", rt.name); e != nil {
			return nil, e
		}
		switch len(parts) {
		case 1:
			if m == http.MethodGet {
				return set(OpListCertificates, (*Server).handleListCertificates)
			}
		case 2:
			switch m {
			case http.MethodGet:
				return set(OpGetCertificate, (*Server).handleGetCertificate)
			case http.MethodPatch:
				return set(OpUpdateCertificate, (*Server).handleUpdateCertificate)
			case http.MethodDelete:
				return set(OpDeleteCertificate, (*Server).handleDeleteCertificate)
			}
		case 3:
			switch strings.ToLower(parts[2]) {
			case "versions":
				if m == http.MethodGet {
					return set(OpGetCertificateVersions, (*Server).handleListVersions)
				}
			case "pending":
				switch m {
				case http.MethodGet:
					return set(OpGetCertificateOperation, (*Server).handleGetOperation)
				case http.MethodPatch:
					return set(OpUpdateCertificateOperation, (*Server).handleUpdateOperation)
				case http.MethodDelete:
					return set(OpDeleteCertificateOperation, (*Server).handleDeleteOperation)
				}
			case "create":
				if m == http.MethodPost {
					return set(OpCreateCertificate, (*Server).handleCreate)
				}
			case "import":
				if m == http.MethodPost {
					return set(OpImportCertificate, (*Server).handleImport)
				}
			case "policy":
				switch m {
				case http.MethodGet:
					return set(OpGetCertificatePolicy, (*Server).handleGetPolicy)
				case http.MethodPatch:
					return set(OpUpdateCertificatePolicy, (*Server).handleUpdatePolicy)
				}
			default:
				rt.version = parts[2]
				switch m {
				case http.MethodGet:
					return set(OpGetCertificate, (*Server).handleGetCertificate)
				case http.MethodPatch:
					return set(OpUpdateCertificate, (*Server).handleUpdateCertificate)
				}
			}
		case 4:
			if strings.EqualFold(parts[2], "pending") && strings.EqualFold(parts[3], "merge") {
				if m == http.MethodPost {
					return set(OpMergeCertificate, (*Server).handleMerge)
				}
			} else {
				return nil, badPath
			}
		default:
			return nil, badPath
		}
		return nil, notAllowed
	case "deletedcertificates":
		if e := checkName("certificate", rt.name); e != nil {
			return nil, e
		}
		switch len(parts) {
		case 1:
			if m == http.MethodGet {
				return set(OpListDeletedCertificates, (*Server).handleListDeleted)
			}
		case 2:
			switch m {
			case http.MethodGet:
				return set(OpGetDeletedCertificate, (*Server).handleGetDeleted)
			case http.MethodDelete:
				return set(OpPurgeDeletedCertificate, (*Server).handlePurge)
			}
		case 3:
			if !strings.EqualFold(parts[2], "recover") {
				return nil, badPath
			}
			if m == http.MethodPost {
				return set(OpRecoverDeletedCertificate, (*Server).handleRecover)
			}
		default:
			return nil, badPath
		}
		return nil, notAllowed
	case "secrets":
		if len(parts) < 2 || len(parts) > 3 || rt.name == "" {
			return nil, errBadParameter("fakevault serves only certificate-backed secrets: GET /secrets/{name}/{version}.")
		}
		if e := checkName("secret", rt.name); e != nil {
			return nil, e
		}
		if len(parts) == 3 {
			rt.version = parts[2]
		}
		if m == http.MethodGet {
			return set(OpGetSecret, (*Server).handleGetSecret)
		}
		return nil, notAllowed
	}
	return nil, badPath
}

// checkName refuses a name ("" = none given) the service would not accept for that kind of object.
func checkName(kind, name string) *vaultError {
	if name != "" && !nameRE.MatchString(name) {
		return errBadParameter("The %s name '%s' is invalid. A name must match ^[0-9a-zA-Z-]{1,127}$.", kind, name)
	}
	return nil
}

func resolveIssuers(rt *route, m string, rest []string) (*route, *vaultError) {
	switch len(rest) {
	case 0:
		if m == http.MethodGet {
			rt.op, rt.handler = OpListCertificateIssuers, (*Server).handleListIssuers
			return rt, nil
		}
	case 1:
		rt.name = rest[0]
		switch m {
		case http.MethodGet:
			rt.op, rt.handler = OpGetCertificateIssuer, (*Server).handleGetIssuer
		case http.MethodPut, http.MethodPatch:
			rt.op, rt.handler = OpSetCertificateIssuer, (*Server).handleSetIssuer
		case http.MethodDelete:
			rt.op, rt.handler = OpDeleteCertificateIssuer, (*Server).handleDeleteIssuer
		default:
			return nil, errMethodNotAllowed(m)
		}
		return rt, nil
	}
	return nil, errBadParameter("The request URI is invalid.")
}

// ChallengeResource is the resource the 401 challenge names for a request to host: like Key Vault, the vault's
// host without its first label (myvault.vault.azure.net -> https://vault.azure.net). The Azure SDK accepts a
// challenge only when the vault's host ends with "." plus that resource's host, so at 127.0.0.1:PORT the fake
// names https://0.0.1:PORT: clients keep challenge resource verification on against the fake, as they must
// against Key Vault.
func ChallengeResource(host string) string {
	if _, rest, ok := strings.Cut(host, "."); ok && rest != "" {
		if strings.HasSuffix(strings.ToLower(host), ".vault.azure.net") {
			return VaultResource
		}
		return "https://" + rest
	}
	return VaultResource
}
