package fakevault

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// AdminHandler returns the JSON admin API (no authentication). The server always mounts it under
// /admin/ on its own listener; the handler expects the full /admin/... paths.
//
//	GET    /admin/                                        {vaultURL, authorityHost, tenantId}
//	GET    /admin/ca                                      the TLS CA (PEM)
//	POST   /admin/certificates                            CertSpec (validity as "720h") -> Version
//	GET    /admin/certificates/{n}                        latest Version
//	DELETE /admin/certificates/{n}                        soft-delete
//	POST   /admin/certificates/{n}/rotate                 -> Version
//	POST   /admin/certificates/{n}/recover | /purge
//	GET    /admin/certificates/{n}/versions               [Version] oldest first
//	POST   /admin/certificates/{n}/versions/{v}/enabled   {"enabled":false} (v "latest" = latest)
//	POST   /admin/certificates/{n}/versions/{v}/corrupt-key | /strip-key
//	POST   /admin/faults                                  Fault (latency as "250ms"); GET lists; DELETE clears
//	POST   /admin/limit                                   {"requestsPer10s":100,"sendRetryAfter":true,"window":"10s"}
//	GET    /admin/counts, DELETE /admin/counts
//	POST   /admin/identities                              {"clientId","clientSecret"} or {"clientId","certificatePem"}
//	POST   /admin/restrictions                            {"clientId","certificateNames":[...]}
//	POST   /admin/issuers                                 {"name"}
//	POST   /admin/renewals                                -> {"renewed":n}
//	POST   /admin/pending-duration                        {"duration":"30s"}
//	POST   /admin/operations/{n}/fail                     {"code","message"}
//	POST   /admin/certificates/{n}/backdate               {"by":"720h"}: issue n's new versions that much in the past
//	POST   /admin/tokens/revoke
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Duration is a time.Duration that reads JSON strings ("1.5s") or numbers (nanoseconds) and
// writes strings.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		v, err := time.ParseDuration(str)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("duration must be a string like \"10s\" or a number of nanoseconds")
	}
	*d = Duration(n)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

type adminSpec struct {
	CertSpec
	Validity Duration `json:"validity,omitempty"`
}

type adminFault struct {
	Fault
	Latency Duration `json:"latency,omitempty"`
}

// AdminVersion is the admin API's JSON view of a Version.
type AdminVersion struct {
	Name       string    `json:"name"`               // certificate name
	Version    string    `json:"version"`            // 32 hex characters
	Thumbprint string    `json:"thumbprint"`         // SHA-1 of the leaf, upper-case hex
	SecretID   string    `json:"secretId"`           // the secret's id (sid)
	Enabled    bool      `json:"enabled"`            // enabled attribute
	Pending    bool      `json:"pending,omitempty"`  // still being issued
	Subject    string    `json:"subject,omitempty"`  // leaf subject
	DNSNames   []string  `json:"dnsNames,omitempty"` // leaf DNS SANs
	NotBefore  time.Time `json:"notBefore,omitzero"` // leaf validity start
	NotAfter   time.Time `json:"notAfter,omitzero"`  // leaf validity end
	ChainPEM   string    `json:"chainPem,omitempty"` // leaf first, up to the root
}

func adminVersion(v Version) AdminVersion {
	a := AdminVersion{Name: v.Name, Version: v.Version, Thumbprint: v.Thumbprint, SecretID: v.SecretID, Enabled: v.Enabled, Pending: v.Pending}
	if v.Leaf != nil {
		a.Subject, a.DNSNames, a.NotBefore, a.NotAfter = v.Leaf.Subject.String(), v.Leaf.DNSNames, v.Leaf.NotBefore, v.Leaf.NotAfter
	}
	var b strings.Builder
	for _, c := range v.Chain {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	a.ChainPEM = b.String()
	return a
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func adminErr(w http.ResponseWriter, status int, err error) {
	adminJSON(w, status, map[string]string{"error": err.Error()})
}

func adminDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		adminErr(w, http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err))
		return false
	}
	return true
}

func adminVersionArg(v string) string {
	if v == "latest" || v == "-" {
		return ""
	}
	return v
}

// adminOK answers {"ok":true}, or 400 with err.
func adminOK(w http.ResponseWriter, err error) {
	if err != nil {
		adminErr(w, http.StatusBadRequest, err)
		return
	}
	adminJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// handleJSON registers a route whose JSON body (unknown fields refused) is decoded into a fresh T for f;
// it answers ok, or 400 with f's error.
func handleJSON[T any](mux *http.ServeMux, pattern string, f func(r *http.Request, body *T) error) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var body T
		if !adminDecode(w, r, &body) {
			return
		}
		adminOK(w, f(r, &body))
	})
}

func (s *Server) newAdminHandler() http.Handler {
	mux := http.NewServeMux()
	result := func(w http.ResponseWriter, v Version, err error) {
		if err != nil {
			adminErr(w, http.StatusBadRequest, err)
			return
		}
		adminJSON(w, http.StatusOK, adminVersion(v))
	}
	// action registers a bodiless route that runs f and answers ok.
	action := func(pattern string, f func()) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			f()
			adminOK(w, nil)
		})
	}
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, map[string]string{"vaultURL": s.URL(), "authorityHost": s.AuthorityHost(), "tenantId": s.tenant})
	})
	mux.HandleFunc("GET /admin/ca", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.caPEM)
	})
	mux.HandleFunc("POST /admin/certificates", func(w http.ResponseWriter, r *http.Request) {
		var spec adminSpec
		if !adminDecode(w, r, &spec) {
			return
		}
		spec.CertSpec.Validity = time.Duration(spec.Validity)
		v, err := s.Seed(spec.CertSpec)
		result(w, v, err)
	})
	mux.HandleFunc("GET /admin/certificates/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.Latest(r.PathValue("name"))
		if err != nil {
			adminErr(w, http.StatusNotFound, err)
			return
		}
		result(w, v, nil)
	})
	mux.HandleFunc("DELETE /admin/certificates/{name}", func(w http.ResponseWriter, r *http.Request) {
		adminOK(w, s.Delete(r.PathValue("name")))
	})
	mux.HandleFunc("POST /admin/certificates/{name}/rotate", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.Rotate(r.PathValue("name"))
		result(w, v, err)
	})
	mux.HandleFunc("POST /admin/certificates/{name}/recover", func(w http.ResponseWriter, r *http.Request) {
		adminOK(w, s.Recover(r.PathValue("name")))
	})
	mux.HandleFunc("POST /admin/certificates/{name}/purge", func(w http.ResponseWriter, r *http.Request) {
		adminOK(w, s.Purge(r.PathValue("name")))
	})
	mux.HandleFunc("GET /admin/certificates/{name}/versions", func(w http.ResponseWriter, r *http.Request) {
		vs, err := s.Versions(r.PathValue("name"))
		if err != nil {
			adminErr(w, http.StatusNotFound, err)
			return
		}
		out := make([]AdminVersion, 0, len(vs))
		for _, v := range vs {
			out = append(out, adminVersion(v))
		}
		adminJSON(w, http.StatusOK, out)
	})
	handleJSON(mux, "POST /admin/certificates/{name}/versions/{version}/enabled", func(r *http.Request, body *struct {
		Enabled *bool `json:"enabled"`
	}) error {
		if body.Enabled == nil {
			return errors.New(`body must be {"enabled": true|false}`)
		}
		return s.SetEnabled(r.PathValue("name"), adminVersionArg(r.PathValue("version")), *body.Enabled)
	})
	mux.HandleFunc("POST /admin/certificates/{name}/versions/{version}/corrupt-key", func(w http.ResponseWriter, r *http.Request) {
		adminOK(w, s.CorruptKey(r.PathValue("name"), adminVersionArg(r.PathValue("version"))))
	})
	mux.HandleFunc("POST /admin/certificates/{name}/versions/{version}/strip-key", func(w http.ResponseWriter, r *http.Request) {
		adminOK(w, s.StripKey(r.PathValue("name"), adminVersionArg(r.PathValue("version"))))
	})
	handleJSON(mux, "POST /admin/faults", func(_ *http.Request, f *adminFault) error {
		f.Fault.Latency = time.Duration(f.Latency)
		s.InjectFault(f.Fault)
		return nil
	})
	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		out := []adminFault{}
		for _, f := range s.Faults() {
			out = append(out, adminFault{Fault: f, Latency: Duration(f.Latency)})
		}
		adminJSON(w, http.StatusOK, out)
	})
	action("DELETE /admin/faults", s.ClearFaults)
	handleJSON(mux, "POST /admin/limit", func(_ *http.Request, body *struct {
		RequestsPer10s int      `json:"requestsPer10s"`
		SendRetryAfter bool     `json:"sendRetryAfter"`
		Window         Duration `json:"window"`
	}) error {
		s.SetLimitWindow(time.Duration(body.Window))
		s.SetLimit(body.RequestsPer10s, body.SendRetryAfter)
		return nil
	})
	mux.HandleFunc("GET /admin/counts", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Counts())
	})
	action("DELETE /admin/counts", s.ResetCounts)
	handleJSON(mux, "POST /admin/identities", func(_ *http.Request, body *struct {
		ClientID       string `json:"clientId"`
		ClientSecret   string `json:"clientSecret"`
		CertificatePEM string `json:"certificatePem"`
	}) error {
		if body.ClientID == "" || (body.ClientSecret == "" && body.CertificatePEM == "") {
			return errors.New("clientId and clientSecret or certificatePem are required")
		}
		if body.ClientSecret != "" {
			s.AddClientSecret(body.ClientID, body.ClientSecret)
		}
		if body.CertificatePEM != "" {
			blk, _ := pem.Decode([]byte(body.CertificatePEM))
			if blk == nil {
				return errors.New("certificatePem holds no PEM block")
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return err
			}
			s.AddClientCertificate(body.ClientID, c)
		}
		return nil
	})
	handleJSON(mux, "POST /admin/restrictions", func(_ *http.Request, body *struct {
		ClientID         string   `json:"clientId"`
		CertificateNames []string `json:"certificateNames"`
	}) error {
		s.Restrict(body.ClientID, body.CertificateNames...)
		return nil
	})
	handleJSON(mux, "POST /admin/issuers", func(_ *http.Request, body *struct {
		Name string `json:"name"`
	}) error {
		return s.AddIssuer(body.Name)
	})
	mux.HandleFunc("POST /admin/renewals", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, map[string]int{"renewed": s.AdvanceRenewals()})
	})
	handleJSON(mux, "POST /admin/pending-duration", func(_ *http.Request, body *struct {
		Duration Duration `json:"duration"`
	}) error {
		s.SetPendingDuration(time.Duration(body.Duration))
		return nil
	})
	handleJSON(mux, "POST /admin/operations/{name}/fail", func(r *http.Request, body *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}) error {
		s.FailNextOperation(r.PathValue("name"), body.Code, body.Message)
		return nil
	})
	handleJSON(mux, "POST /admin/certificates/{name}/backdate", func(r *http.Request, body *struct {
		By Duration `json:"by"`
	}) error {
		s.SetIssueBackdate(r.PathValue("name"), time.Duration(body.By))
		return nil
	})
	action("POST /admin/tokens/revoke", s.RevokeTokens)
	return mux
}
