package fakevault

import (
	"crypto/x509"
	"maps"
	"net/http"
	"strings"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// handleImport serves POST /certificates/{n}/import: a PFX (standard base64, with pwd) or PEM value
// holding the private key and one or more certificates.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wireImportRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Value == "" {
		writeError(w, errBadParameter("Property value is required."))
		return
	}
	if e := validateTags(req.Tags); e != nil {
		writeError(w, e)
		return
	}
	dec, err := issuer.DecodeValue(req.Value, req.Pwd)
	if err != nil {
		writeError(w, errBadParameter("The specified certificate content can not be read: %s. Check the format and the password.", err))
		return
	}
	if dec.Key == nil {
		writeError(w, errBadParameter("Private key is not specified in the specified X.509 PEM certificate content. Please specify private key in the X.509 PEM certificate content."))
		return
	}
	var leaf *x509.Certificate
	for _, c := range dec.Certs {
		if issuer.PublicKeysEqual(dec.Key.Public(), c.PublicKey) {
			leaf = c
			break
		}
	}
	if leaf == nil {
		writeError(w, errBadParameter("The private key does not match any certificate in the specified content.")) // inferred text
		return
	}
	ctype := issuer.ContentTypePKCS12
	if strings.Contains(req.Value, "-----BEGIN") {
		ctype = issuer.ContentTypePEM
	}
	if req.Policy != nil && req.Policy.SecretProps != nil && req.Policy.SecretProps.ContentType != "" {
		ctype = strings.ToLower(req.Policy.SecretProps.ContentType)
	}
	base := policyFromCertificate(leaf, ctype, true)
	if req.Policy != nil {
		base = mergePolicy(base, req.Policy)
	}
	policy, e := normalizePolicy(base)
	if e != nil {
		writeError(w, e)
		return
	}
	preserve := req.PreserveCertOrder != nil && *req.PreserveCertOrder

	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.checkNameFreeLocked(rt.name); e != nil {
		writeError(w, e)
		return
	}
	lower := strings.ToLower(rt.name)
	now := s.now()
	c := s.certs[lower]
	if c != nil {
		s.advanceLocked(c)
		if c.op != nil && c.op.status == statusInProgress {
			writeError(w, newError(http.StatusConflict, CodeConflict, "",
				"There is a pending operation on certificate %s. Please perform operations on a certificate in a sequential manner.", rt.name))
			return
		}
	} else {
		c = &certificate{name: rt.name, policyCreated: now}
		s.certs[lower] = c
	}
	c.policy, c.policyUpdated, c.spec = policy, now, nil
	v := newVersion(dec.Key, issuer.OrderChain(leaf, dec.Certs), now)
	v.ctype = policy.SecretProps.ContentType
	if preserve {
		v.secretOrd = dec.Certs
	}
	if !*policy.KeyProps.Exportable {
		v.secretKey = nil
	}
	if req.Attributes != nil && req.Attributes.Enabled != nil {
		v.enabled = *req.Attributes.Enabled
	}
	v.tags = maps.Clone(req.Tags)
	c.versions = append(c.versions, v)
	b := s.bundleLocked(rt.base, c, v)
	if preserve {
		b.PreserveCertOrder = ptr(true)
	}
	writeJSON(w, http.StatusOK, b)
}
