package fakevault

import (
	"net/http"
	"strings"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// namedIssuer is a certificate issuer registered in the vault, backed by a test CA.
type namedIssuer struct {
	name     string
	provider string
	ca       *issuer.CA
	created  time.Time
	updated  time.Time
}

// AddIssuer registers a named certificate issuer backed by a fresh test CA: certificates created
// with policy issuer.name == name get root->intermediate->leaf chains (leaf first in the secret).
// Registering an existing name keeps its CA.
func (s *Server) AddIssuer(name string) error {
	_, err := s.addIssuer(name, "Test")
	return err
}

// IssuerCA returns the CA behind a named issuer (nil when unknown): Root and Intermediate let
// tests check the chains. SeedCA is the CA behind seeded chains.
func (s *Server) IssuerCA(name string) *issuer.CA {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ni, ok := s.issuers[strings.ToLower(name)]; ok {
		return ni.ca
	}
	return nil
}

// SeedCA returns the per-server CA that issues seeded chains (ChainDepth 2 and 3).
func (s *Server) SeedCA() *issuer.CA { return s.seedCA }

func (s *Server) addIssuer(name, provider string) (*namedIssuer, error) {
	s.mu.Lock()
	if ni, ok := s.issuers[strings.ToLower(name)]; ok {
		if provider != "" {
			ni.provider = provider
		}
		ni.updated = s.now()
		s.mu.Unlock()
		return ni, nil
	}
	s.mu.Unlock()
	ca, err := issuer.NewCA("fakevault " + name)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ni, ok := s.issuers[strings.ToLower(name)]; ok {
		return ni, nil
	}
	now := s.now()
	ni := &namedIssuer{name: name, provider: provider, ca: ca, created: now, updated: now}
	s.issuers[strings.ToLower(name)] = ni
	return ni, nil
}

type wireIssuerBundle struct {
	ID         string          `json:"id"`
	Provider   string          `json:"provider"`
	Attributes *wireAttributes `json:"attributes,omitempty"`
}

func (ni *namedIssuer) json(base string, full bool) wireIssuerBundle {
	b := wireIssuerBundle{ID: base + "certificates/issuers/" + ni.name, Provider: ni.provider}
	if full {
		b.Attributes = &wireAttributes{Enabled: ptr(true), Created: unix(ni.created), Updated: unix(ni.updated)}
	}
	return b
}

func (s *Server) handleSetIssuer(w http.ResponseWriter, r *http.Request, rt *route) {
	var req struct {
		Provider string `json:"provider"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if r.Method == http.MethodPut && req.Provider == "" {
		writeError(w, errBadParameter("Property provider is required."))
		return
	}
	if strings.EqualFold(rt.name, IssuerSelf) || strings.EqualFold(rt.name, IssuerUnknown) {
		writeError(w, errBadParameter("The issuer name '%s' is reserved.", rt.name))
		return
	}
	ni, err := s.addIssuer(rt.name, req.Provider)
	if err != nil {
		writeError(w, newError(http.StatusInternalServerError, CodeInternalServerError, "", "%s", err))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, ni.json(rt.base, true))
}

func (s *Server) handleGetIssuer(w http.ResponseWriter, r *http.Request, rt *route) {
	s.answerIssuer(w, rt, false)
}

func (s *Server) handleDeleteIssuer(w http.ResponseWriter, r *http.Request, rt *route) {
	s.answerIssuer(w, rt, true)
}

// answerIssuer answers with the issuer rt names, removing it first when remove is set, or writes the service's 404.
func (s *Server) answerIssuer(w http.ResponseWriter, rt *route, remove bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(rt.name)
	ni, ok := s.issuers[key]
	if !ok {
		writeError(w, newError(http.StatusNotFound, "CertificateIssuerNotFound", "", "Issuer not found: %s", rt.name))
		return
	}
	if remove {
		delete(s.issuers, key)
	}
	writeJSON(w, http.StatusOK, ni.json(rt.base, true))
}

func (s *Server) handleListIssuers(w http.ResponseWriter, r *http.Request, rt *route) {
	s.mu.Lock()
	items := []wireIssuerBundle{}
	for _, k := range sortedKeys(s.issuers) {
		items = append(items, s.issuers[k].json(rt.base, false))
	}
	s.mu.Unlock()
	writePage(w, r, items)
}
