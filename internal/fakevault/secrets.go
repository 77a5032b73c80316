package fakevault

import (
	"encoding/base64"
	"maps"
	"net/http"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// handleGetSecret serves GET /secrets/{n}/{version}: the certificate-backed secret.
func (s *Server) handleGetSecret(w http.ResponseWriter, r *http.Request, rt *route) {
	out := r.URL.Query().Get("outContentType")
	s.mu.Lock()
	c, e := s.lookupLocked(rt.name)
	if e != nil {
		s.mu.Unlock()
		writeError(w, errSecretNotFound(rt.name, ""))
		return
	}
	v := c.at(rt.version)
	if v == nil {
		s.mu.Unlock()
		writeError(w, errSecretNotFound(rt.name, rt.version))
		return
	}
	if v.pending || !v.enabled {
		s.mu.Unlock()
		writeError(w, newError(http.StatusForbidden, CodeForbidden, InnerSecretDisabled, msgSecretDisabled))
		return
	}
	val, err := s.secretValueLocked(v)
	ctype := v.ctype
	body := &wireSecret{
		ContentType: ctype,
		ID:          rt.base + "secrets/" + c.name + "/" + v.id,
		Managed:     true,
		Attributes:  v.attributes(true),
		Tags:        maps.Clone(v.tags),
		KID:         rt.base + "keys/" + c.name + "/" + v.id,
	}
	s.mu.Unlock()
	if err != nil {
		writeError(w, newError(http.StatusInternalServerError, CodeInternalServerError, "", "fakevault could not encode the secret: %s", err))
		return
	}
	if out != "" {
		conv, e := convertSecret(val, ctype, out)
		if e != nil {
			writeError(w, e)
			return
		}
		val = conv
		body.ContentType = issuer.ContentTypePEM
	}
	body.Value = val
	writeJSON(w, http.StatusOK, body)
}

// convertSecret implements outContentType: only PFX to PEM is supported, like the service.
func convertSecret(val, from, to string) (string, *vaultError) {
	name := func(ct string) string {
		switch strings.ToLower(ct) {
		case issuer.ContentTypePKCS12:
			return "PFX"
		case issuer.ContentTypePEM:
			return "PEM"
		}
		return "Unsupported"
	}
	if name(from) != "PFX" || name(to) != "PEM" {
		return "", errBadParameter("The '%s' to '%s' transformation is not supported. Only PFX to PEM transformation is supported.", name(from), name(to))
	}
	der, err := base64.StdEncoding.DecodeString(val)
	if err != nil {
		return "", errBadParameter("The secret value is not a valid PFX.")
	}
	dec, err := issuer.DecodeValue(val, "")
	if err != nil {
		// certificate-only PFX (no key): convert the certificates alone
		certs, err2 := pkcs12.DecodeTrustStore(der, "")
		if err2 != nil {
			return "", errBadParameter("The secret value is not a valid PFX: %s", err)
		}
		pemText, _ := issuer.EncodePEM(nil, certs)
		return pemText, nil
	}
	pemText, err := issuer.EncodePEM(dec.Key, dec.Certs)
	if err != nil {
		return "", errBadParameter("%s", err)
	}
	return pemText, nil
}
