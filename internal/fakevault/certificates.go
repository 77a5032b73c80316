package fakevault

import (
	"encoding/base64"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxPageSize is the service's cap on maxresults.
const maxPageSize = 25

// withCert holds s.mu while find looks up the certificate name and fn answers with it;
// a lookup error is written instead.
func (s *Server) withCert(w http.ResponseWriter, name string, find func(string) (*certificate, *vaultError), fn func(c *certificate)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := find(name)
	if e != nil {
		writeError(w, e)
		return
	}
	fn(c)
}

// withCertVersion holds s.mu while fn answers with the live certificate version rt names ("" = latest),
// or writes the service's 404.
func (s *Server) withCertVersion(w http.ResponseWriter, rt *route, fn func(c *certificate, v *version)) {
	s.withCert(w, rt.name, s.lookupLocked, func(c *certificate) {
		v := c.at(rt.version)
		if v == nil {
			writeError(w, errCertNotFound(rt.name, rt.version))
			return
		}
		fn(c, v)
	})
}

func (s *Server) handleGetCertificate(w http.ResponseWriter, r *http.Request, rt *route) {
	s.withCertVersion(w, rt, func(c *certificate, v *version) {
		writeJSON(w, http.StatusOK, s.bundleLocked(rt.base, c, v))
	})
}

func (s *Server) handleUpdateCertificate(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wireUpdateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Tags != nil {
		if e := validateTags(*req.Tags); e != nil {
			writeError(w, e)
			return
		}
	}
	s.withCertVersion(w, rt, func(c *certificate, v *version) {
		now := s.now()
		if req.Policy != nil {
			if e := c.patchPolicy(req.Policy, now); e != nil {
				writeError(w, e)
				return
			}
		}
		if req.Attributes != nil && req.Attributes.Enabled != nil {
			v.enabled = *req.Attributes.Enabled
		}
		if req.Tags != nil {
			v.tags = maps.Clone(*req.Tags)
		}
		v.updated = now
		writeJSON(w, http.StatusOK, s.bundleLocked(rt.base, c, v))
	})
}

func (s *Server) handleDeleteCertificate(w http.ResponseWriter, r *http.Request, rt *route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, e := s.deleteLocked(rt.name)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, s.deletedBundleLocked(rt.base, d))
}

func (s *Server) handleGetDeleted(w http.ResponseWriter, r *http.Request, rt *route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deleted[strings.ToLower(rt.name)]
	if !ok || s.now().Before(d.visibleAt) {
		writeError(w, errDeletedNotFound(rt.name))
		return
	}
	writeJSON(w, http.StatusOK, s.deletedBundleLocked(rt.base, d))
}

func (s *Server) handleRecover(w http.ResponseWriter, r *http.Request, rt *route) {
	s.withCert(w, rt.name, s.recoverLocked, func(c *certificate) {
		writeJSON(w, http.StatusOK, s.bundleLocked(rt.base, c, c.latest()))
	})
}

func (s *Server) handlePurge(w http.ResponseWriter, r *http.Request, rt *route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.purgeLocked(rt.name); e != nil {
		writeError(w, e)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request, rt *route) {
	s.withCert(w, rt.name, s.lookupLocked, func(c *certificate) {
		writeJSON(w, http.StatusOK, s.policyJSON(rt.base, c))
	})
}

func (s *Server) handleUpdatePolicy(w http.ResponseWriter, r *http.Request, rt *route) {
	var req wirePolicy
	if !decodeBody(w, r, &req) {
		return
	}
	s.withCert(w, rt.name, s.lookupLocked, func(c *certificate) {
		if e := c.patchPolicy(&req, s.now()); e != nil {
			writeError(w, e)
			return
		}
		writeJSON(w, http.StatusOK, s.policyJSON(rt.base, c))
	})
}

func (s *Server) handleListCertificates(w http.ResponseWriter, r *http.Request, rt *route) {
	includePending, _ := strconv.ParseBool(r.URL.Query().Get("includePending"))
	s.mu.Lock()
	var items []wireItem
	for _, key := range sortedKeys(s.certs) {
		c := s.certs[key]
		s.advanceLocked(c)
		v := c.latest()
		if v == nil || (v.pending && !includePending) {
			continue
		}
		items = append(items, s.itemLocked(rt.base, c, v, false))
	}
	s.mu.Unlock()
	writePage(w, r, items)
}

func (s *Server) handleListVersions(w http.ResponseWriter, r *http.Request, rt *route) {
	s.mu.Lock()
	c, e := s.lookupLocked(rt.name)
	if e != nil {
		s.mu.Unlock()
		writeError(w, e)
		return
	}
	vs := append([]*version(nil), c.versions...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].id < vs[j].id }) // the service orders by id
	items := make([]wireItem, 0, len(vs))
	for _, v := range vs {
		items = append(items, s.itemLocked(rt.base, c, v, true))
	}
	s.mu.Unlock()
	writePage(w, r, items)
}

func (s *Server) handleListDeleted(w http.ResponseWriter, r *http.Request, rt *route) {
	now := s.now()
	s.mu.Lock()
	var items []wireItem
	for _, key := range sortedKeys(s.deleted) {
		d := s.deleted[key]
		if now.Before(d.visibleAt) {
			continue
		}
		v := d.cert.latest()
		it := s.itemLocked(rt.base, d.cert, v, false)
		it.Subject = nil
		it.Attributes = v.attributes(true)
		it.wireDeleted = d.wire(rt.base)
		items = append(items, it)
	}
	s.mu.Unlock()
	writePage(w, r, items)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writePage writes one page of items with an absolute nextLink built from the request's own
// scheme, host, port and query (api-version, maxresults, includePending...), plus $skiptoken.
func writePage[T any](w http.ResponseWriter, r *http.Request, items []T) {
	q := r.URL.Query()
	size := maxPageSize
	if m := q.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 {
			writeError(w, errBadParameter("The value '%s' of parameter maxresults is invalid. It must be between 1 and 25.", m))
			return
		}
		size = min(n, maxPageSize)
	}
	offset := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "fakevault:"))
		if err != nil || err2 != nil || n < 0 {
			writeError(w, errBadParameter("The $skiptoken '%s' is invalid.", tok))
			return
		}
		offset = n
	}
	if offset > len(items) {
		offset = len(items)
	}
	end := min(offset+size, len(items))
	pg := wirePage[T]{Value: items[offset:end]}
	if pg.Value == nil {
		pg.Value = []T{}
	}
	if end < len(items) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("$skiptoken", base64.RawURLEncoding.EncodeToString([]byte("fakevault:"+strconv.Itoa(end))))
		nq.Set("maxresults", strconv.Itoa(size))
		link := "https://" + r.Host + r.URL.Path + "?" + nq.Encode()
		pg.NextLink = &link
	}
	writeJSON(w, http.StatusOK, pg)
}
