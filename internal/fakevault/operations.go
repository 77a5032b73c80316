package fakevault

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// Certificate operation statuses.
const (
	statusInProgress = "inProgress"
	statusCompleted  = "completed"
	statusFailed     = "failed"
	statusCancelled  = "cancelled"
)

const (
	detailsInProgress = "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later."
	detailsMerge      = "Pending certificate created. Please Perform Merge to complete the request."
)

type opFailure struct{ code, message string }

// operation is a certificate operation (/certificates/{n}/pending).
type operation struct {
	requestID             string
	issuerName            string
	csr                   []byte
	key                   crypto.Signer
	policy                *wirePolicy
	status                string
	errCode, errMsg       string
	cancellationRequested bool
	readyAt               time.Time
	version               *version // the pending version while in progress
	preserveCertOrder     bool
	failure               *opFailure
	subject               issuer.Leaf
}

// completedOperation is the record a certificate issued outside the HTTP API (Seed, renewal) gets.
func completedOperation(c *certificate, _ time.Time) *operation {
	op := &operation{requestID: newHexID(), status: statusCompleted, policy: clonePolicy(c.policy)}
	if c.policy.Issuer != nil {
		op.issuerName = c.policy.Issuer.Name
	}
	if l := c.latest(); l != nil {
		op.key = l.key
		if l.leaf != nil {
			op.subject = issuer.Leaf{Subject: l.leaf.Subject, DNSNames: l.leaf.DNSNames}
		}
	}
	return op
}

// SetPendingDuration sets how long created certificates stay inProgress (on the Now clock)
// before issuance completes. Default 0: the create answer says inProgress (like the service)
// and the first later request sees the operation completed.
func (s *Server) SetPendingDuration(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pendingDuration = d
}

// FailNextOperation makes the next (or the current in-progress) certificate operation of name end
// as "failed" with error {code, message} instead of issuing.
func (s *Server) FailNextOperation(name, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &opFailure{code: code, message: message}
	if c, ok := s.certs[strings.ToLower(name)]; ok && c.op != nil && c.op.status == statusInProgress {
		c.op.failure = f
		return
	}
	s.failNext[strings.ToLower(name)] = *f
}

// advanceLocked moves an in-progress operation forward on the Now clock.
func (s *Server) advanceLocked(c *certificate) {
	op := c.op
	if op == nil || op.status != statusInProgress || strings.EqualFold(op.issuerName, IssuerUnknown) {
		return
	}
	now := s.now()
	if now.Before(op.readyAt) {
		return
	}
	if op.failure != nil {
		s.finishLocked(c, statusFailed, op.failure.code, op.failure.message)
		return
	}
	var ca *issuer.CA
	if !isSelfIssuer(op.policy) {
		ni, ok := s.issuers[strings.ToLower(op.issuerName)]
		if !ok {
			s.finishLocked(c, statusFailed, "IssuerNotFound", "Issuer '"+op.issuerName+"' was not found in the vault.")
			return
		}
		ca = ni.ca
	}
	chain, err := issueChainWith(op.policy, op.key, s.issueTimeLocked(c.name, now), ca)
	if err != nil {
		s.finishLocked(c, statusFailed, "CertificateIssuanceFailed", err.Error())
		return
	}
	v := op.version
	fillVersion(v, chain, op.key, now)
	if keyNotExportable(op.policy) {
		v.secretKey = nil
	}
	op.status = statusCompleted
	op.version = nil
}

func fillVersion(v *version, chain []*x509.Certificate, key crypto.Signer, now time.Time) {
	v.pending = false
	v.leaf = chain[0]
	v.chain = chain
	v.secretOrd = chain
	v.key = key
	v.secretKey = key
	v.nbf, v.exp = chain[0].NotBefore, chain[0].NotAfter
	v.created, v.updated = now, now
	v.secretVal = ""
}

// finishLocked ends an operation without a certificate.
func (s *Server) finishLocked(c *certificate, status, code, msg string) {
	op := c.op
	op.status, op.errCode, op.errMsg = status, code, msg
	if op.version != nil {
		c.removeVersion(op.version)
		op.version = nil
	}
}

// issueChainWith issues a certificate for key per policy: self-signed for Self (and Unknown when
// forced, e.g. Rotate), or root->intermediate->leaf from ca for a named issuer.
func issueChainWith(policy *wirePolicy, key crypto.Signer, now time.Time, ca *issuer.CA) ([]*x509.Certificate, error) {
	l, err := leafFromPolicy(policy, now)
	if err != nil {
		return nil, err
	}
	if ca == nil {
		leaf, err := issuer.SelfSigned(key, l)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{leaf}, nil
	}
	return ca.Issue(key.Public(), l, 3)
}

func (s *Server) issueChain(policy *wirePolicy, key crypto.Signer, now time.Time) ([]*x509.Certificate, error) {
	var ca *issuer.CA
	if !isSelfIssuer(policy) && !isUnknownIssuer(policy) {
		s.mu.Lock()
		ni, ok := s.issuers[strings.ToLower(policy.Issuer.Name)]
		s.mu.Unlock()
		if ok {
			ca = ni.ca
		}
	}
	return issueChainWith(policy, key, now, ca)
}

func (s *Server) operationJSON(base string, c *certificate) *wireOperation {
	op := c.op
	if op.csr == nil && op.key != nil {
		op.csr, _ = issuer.CSR(op.key, op.subject)
	}
	w := &wireOperation{
		ID:                    base + "certificates/" + c.name + "/pending",
		Issuer:                &wireIssuer{Name: op.issuerName},
		CSR:                   base64.StdEncoding.EncodeToString(op.csr),
		CancellationRequested: op.cancellationRequested,
		Status:                op.status,
		RequestID:             op.requestID,
	}
	if op.preserveCertOrder {
		w.PreserveCertOrder = ptr(true)
	}
	switch op.status {
	case statusInProgress:
		w.StatusDetails = detailsInProgress
		if strings.EqualFold(op.issuerName, IssuerUnknown) {
			w.StatusDetails = detailsMerge
		}
	case statusCompleted:
		w.Target = base + "certificates/" + c.name
	case statusFailed:
		w.StatusDetails = op.errMsg
		w.Error = &wireError{Code: op.errCode, Message: op.errMsg}
	case statusCancelled:
		w.StatusDetails = "The certificate request was cancelled." // inferred text
	}
	return w
}

// decodeBody reads the request's JSON body into v; on failure it writes the service's 400 and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		writeError(w, errBadParameter("The request body is not valid JSON: %s", err))
		return false
	}
	return true
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wireCreateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if e := validateTags(req.Tags); e != nil {
		writeError(w, e)
		return
	}
	lower := strings.ToLower(rt.name)
	s.mu.Lock()
	policy, reuse, e := s.prepareCreateLocked(rt.name, &req)
	s.mu.Unlock()
	if e != nil {
		writeError(w, e)
		return
	}
	now := s.now()
	key := reuse
	if key == nil {
		var err error
		if key, err = issuer.NewKey(keySpecOf(policy)); err != nil {
			writeError(w, errBadParameter("%s", err))
			return
		}
	}
	leaf, err := leafFromPolicy(policy, now)
	if err != nil {
		writeError(w, errBadParameter("%s", err))
		return
	}
	csr, err := issuer.CSR(key, leaf)
	if err != nil {
		writeError(w, errBadParameter("%s", err))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, e := s.prepareCreateLocked(rt.name, &req); e != nil { // re-check after unlocking
		writeError(w, e)
		return
	}
	c := s.certs[lower]
	if c == nil {
		c = &certificate{name: rt.name, policyCreated: now}
		s.certs[lower] = c
	}
	c.policy, c.policyUpdated, c.spec = policy, now, nil
	months := *policy.X509Props.ValidityMonths
	v := &version{
		id: newHexID(), pending: true, enabled: true, created: now, updated: now,
		nbf: now.Add(-10 * time.Minute), exp: now.AddDate(0, months, 0),
		tags: maps.Clone(req.Tags), ctype: policy.SecretProps.ContentType,
	}
	if req.Attributes != nil && req.Attributes.Enabled != nil {
		v.enabled = *req.Attributes.Enabled
	}
	c.versions = append(c.versions, v)
	op := &operation{
		requestID: newHexID(), issuerName: policy.Issuer.Name, csr: csr, key: key,
		policy: clonePolicy(policy), status: statusInProgress, readyAt: now.Add(s.pendingDuration),
		version: v, preserveCertOrder: req.PreserveCertOrder != nil && *req.PreserveCertOrder,
		subject: leaf,
	}
	if f, ok := s.failNext[lower]; ok {
		op.failure = &f
		delete(s.failNext, lower)
	}
	c.op = op
	body := s.operationJSON(rt.base, c)
	w.Header().Set("Retry-After", "10")
	w.Header().Set("Location", rt.base+"certificates/"+c.name+"/pending?api-version="+
		url.QueryEscape(r.URL.Query().Get("api-version"))+"&request_id="+op.requestID)
	writeJSON(w, http.StatusAccepted, body)
}

// prepareCreateLocked validates a create request: the policy to use and a key to reuse.
func (s *Server) prepareCreateLocked(name string, req *wireCreateRequest) (*wirePolicy, crypto.Signer, *vaultError) {
	if e := s.checkNameFreeLocked(name); e != nil {
		return nil, nil, e
	}
	c := s.certs[strings.ToLower(name)]
	if c != nil {
		s.advanceLocked(c)
		if c.op != nil && c.op.status == statusInProgress {
			return nil, nil, newError(http.StatusConflict, CodeConflict, "",
				"There is a pending operation on certificate %s. Please perform operations on a certificate in a sequential manner.", name) // inferred text
		}
	}
	var policy *wirePolicy
	switch {
	case req.Policy != nil:
		p, e := normalizePolicy(req.Policy)
		if e != nil {
			return nil, nil, e
		}
		policy = p
	case c != nil && c.policy != nil:
		policy = clonePolicy(c.policy)
	default:
		return nil, nil, errBadParameter("Property policy is required.")
	}
	if !isSelfIssuer(policy) && !isUnknownIssuer(policy) {
		if _, ok := s.issuers[strings.ToLower(policy.Issuer.Name)]; !ok {
			return nil, nil, errBadParameter("Issuer '%s' was not found in the vault.", policy.Issuer.Name) // inferred text
		}
	}
	var reuse crypto.Signer
	if c != nil && policy.KeyProps.ReuseKey != nil && *policy.KeyProps.ReuseKey {
		if l := c.latest(); l != nil && l.key != nil {
			ks := issuer.SpecOf(l.key.Public())
			want := keySpecOf(policy)
			if ks.IsEC() == want.IsEC() && ks.Size == want.Size {
				reuse = l.key
			}
		}
	}
	return policy, reuse, nil
}

// certForOpLocked finds a live certificate record even when it has no version (cancelled first issuance).
func (s *Server) certForOpLocked(name string) (*certificate, *vaultError) {
	c, ok := s.certs[strings.ToLower(name)]
	if !ok {
		return nil, errCertNotFound(name, "")
	}
	s.advanceLocked(c)
	if c.op == nil {
		return nil, errPendingNotFound(name)
	}
	return c, nil
}

func (s *Server) handleGetOperation(w http.ResponseWriter, r *http.Request, rt *route) {
	s.withCert(w, rt.name, s.certForOpLocked, func(c *certificate) {
		if c.op.status == statusInProgress {
			w.Header().Set("Retry-After", "10")
		}
		writeJSON(w, http.StatusOK, s.operationJSON(rt.base, c))
	})
}

func (s *Server) handleUpdateOperation(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wireOperationUpdate
	if !decodeBody(w, r, &req) {
		return
	}
	s.withCert(w, rt.name, s.certForOpLocked, func(c *certificate) {
		if req.CancellationRequested != nil && *req.CancellationRequested && c.op.status == statusInProgress {
			c.op.cancellationRequested = true
			// Recorded: an Unknown-issuer operation stays inProgress with cancellation_requested true.
			if !strings.EqualFold(c.op.issuerName, IssuerUnknown) {
				s.finishLocked(c, statusCancelled, "", "")
			}
		}
		writeJSON(w, http.StatusOK, s.operationJSON(rt.base, c))
	})
}

func (s *Server) handleDeleteOperation(w http.ResponseWriter, r *http.Request, rt *route) {
	s.withCert(w, rt.name, s.certForOpLocked, func(c *certificate) {
		body := s.operationJSON(rt.base, c)
		if c.op.version != nil {
			c.removeVersion(c.op.version)
		}
		c.op = nil
		if len(c.versions) == 0 {
			delete(s.certs, strings.ToLower(rt.name))
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func (s *Server) handleMerge(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wireMergeRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.X5C) == 0 {
		writeError(w, errBadParameter("Property x5c is required."))
		return
	}
	if e := validateTags(req.Tags); e != nil {
		writeError(w, e)
		return
	}
	var certs []*x509.Certificate
	for _, b := range req.X5C {
		der, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			writeError(w, errBadParameter("Property x5c has an invalid value: %s", err))
			return
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			writeError(w, errBadParameter("Property x5c has an invalid certificate: %s", err))
			return
		}
		certs = append(certs, c)
	}
	s.withCert(w, rt.name, s.certForOpLocked, func(c *certificate) {
		op := c.op
		if op.status != statusInProgress || op.version == nil {
			writeError(w, errPendingNotFound(rt.name))
			return
		}
		if !strings.EqualFold(op.issuerName, IssuerUnknown) {
			writeError(w, errBadParameter("Merge is only allowed for certificates whose issuer is 'Unknown'.")) // inferred text
			return
		}
		if !issuer.PublicKeysEqual(op.key.Public(), certs[0].PublicKey) {
			writeError(w, errBadParameter("Public key from x5c does not match the private key of the pending certificate.")) // inferred text
			return
		}
		now := s.now()
		v := op.version
		ordered := issuer.OrderChain(certs[0], certs)
		fillVersion(v, ordered, op.key, now)
		if op.preserveCertOrder {
			v.secretOrd = certs
		}
		if keyNotExportable(op.policy) {
			v.secretKey = nil
		}
		if req.Attributes != nil && req.Attributes.Enabled != nil {
			v.enabled = *req.Attributes.Enabled
		}
		if req.Tags != nil {
			v.tags = maps.Clone(req.Tags)
		}
		op.status = statusCompleted
		op.version = nil
		writeJSON(w, http.StatusCreated, s.bundleLocked(rt.base, c, v))
	})
}

// AdvanceRenewals issues a new version for every certificate whose AutoRenew lifetime action is
// due on the Now clock (reuse_key honoured); it returns how many were renewed. The server also
// runs it by itself at most once a second (of the Now clock) when requests arrive.
func (s *Server) AdvanceRenewals() int {
	s.renewMu.Lock()
	defer s.renewMu.Unlock()
	type cand struct {
		name   string
		spec   *CertSpec
		policy *wirePolicy
		reuse  crypto.Signer
	}
	now := s.now()
	var cands []cand
	s.mu.Lock()
	for _, c := range s.certs {
		s.advanceLocked(c)
		l := c.latest()
		if l == nil || l.pending || (c.op != nil && c.op.status == statusInProgress) {
			continue
		}
		if isUnknownIssuer(c.policy) && c.spec == nil {
			continue
		}
		t, ok := renewalTime(c.policy, l.nbf, l.exp)
		if !ok || now.Before(t) || !t.After(l.created) {
			continue
		}
		var reuse crypto.Signer
		if kp := c.policy.KeyProps; kp != nil && kp.ReuseKey != nil && *kp.ReuseKey {
			reuse = l.key
		}
		cands = append(cands, cand{name: c.name, spec: c.spec, policy: clonePolicy(c.policy), reuse: reuse})
	}
	s.mu.Unlock()
	n := 0
	for _, cd := range cands {
		var err error
		if cd.spec != nil {
			_, err = s.Seed(*cd.spec)
		} else {
			_, err = s.renewFromPolicy(cd.name, cd.policy, cd.reuse)
		}
		if err == nil {
			n++
		}
	}
	return n
}

func (s *Server) maybeAutoRenew() {
	now := s.now()
	s.mu.Lock()
	due := now.Sub(s.lastRenewScan) >= time.Second || now.Before(s.lastRenewScan)
	if due {
		s.lastRenewScan = now
	}
	s.mu.Unlock()
	if due {
		s.AdvanceRenewals()
	}
}
