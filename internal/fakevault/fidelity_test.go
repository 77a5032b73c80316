package fakevault_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// recordingsDir holds real Key Vault traffic, copied from shared/fixtures (see its README.md).
const recordingsDir = "testdata/keyvault-recordings"

type recording struct {
	Entries []struct {
		RequestURI      string            `json:"RequestUri"`
		RequestMethod   string            `json:"RequestMethod"`
		RequestBody     json.RawMessage   `json:"RequestBody"`
		StatusCode      int               `json:"StatusCode"`
		ResponseHeaders map[string]string `json:"ResponseHeaders"`
		ResponseBody    json.RawMessage   `json:"ResponseBody"`
	} `json:"Entries"`
}

type recorded struct {
	status  int
	header  http.Header
	body    any
	reqBody string
}

func loadRecorded(t *testing.T, file, method, pathRE string, status, nth int) recorded {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordingsDir, file))
	if err != nil {
		t.Skipf("recordings not available: %v", err)
	}
	var rec recording
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(pathRE)
	seen := 0
	for _, e := range rec.Entries {
		u := e.RequestURI
		if i := strings.Index(u, ".net"); i >= 0 {
			u = u[i+4:]
		}
		if e.RequestMethod != method || e.StatusCode != status || !re.MatchString(u) {
			continue
		}
		if seen++; seen < nth {
			continue
		}
		r := recorded{status: e.StatusCode, header: http.Header{}}
		for k, v := range e.ResponseHeaders {
			r.header.Set(k, v)
		}
		if len(e.ResponseBody) > 0 && string(e.ResponseBody) != "null" {
			if err := json.Unmarshal(e.ResponseBody, &r.body); err != nil {
				t.Fatal(err)
			}
		}
		if len(e.RequestBody) > 0 && string(e.RequestBody) != "null" {
			var str string
			if json.Unmarshal(e.RequestBody, &str) == nil {
				r.reqBody = str
			} else {
				r.reqBody = string(e.RequestBody)
			}
		}
		return r
	}
	t.Fatalf("%s: no %s %s %d #%d", file, method, pathRE, status, nth)
	return recorded{}
}

// shapeDiff lists JSON fields of rec missing from fake or of another JSON type, recursively.
// Recorded nulls are skipped; for arrays every recorded element must match some fake element.
func shapeDiff(path string, rec, fake any) []string {
	switch r := rec.(type) {
	case nil:
		return nil
	case map[string]any:
		f, ok := fake.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, fake has %T", path, fake)}
		}
		var out []string
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if r[k] == nil {
				continue
			}
			fv, ok := f[k]
			if !ok {
				out = append(out, path+"."+k+": missing in fake")
				continue
			}
			out = append(out, shapeDiff(path+"."+k, r[k], fv)...)
		}
		return out
	case []any:
		f, ok := fake.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want array, fake has %T", path, fake)}
		}
		var out []string
		for i, re := range r {
			var best []string
			matched := false
			for _, fe := range f {
				d := shapeDiff(fmt.Sprintf("%s[%d]", path, i), re, fe)
				if len(d) == 0 {
					matched = true
					break
				}
				if best == nil || len(d) < len(best) {
					best = d
				}
			}
			if !matched {
				if best == nil {
					best = []string{fmt.Sprintf("%s[%d]: fake array is empty", path, i)}
				}
				out = append(out, best...)
			}
		}
		return out
	case string:
		if _, ok := fake.(string); !ok {
			return []string{fmt.Sprintf("%s: want string, fake has %T", path, fake)}
		}
	case float64:
		fv, ok := fake.(float64)
		if !ok {
			return []string{fmt.Sprintf("%s: want number, fake has %T", path, fake)}
		}
		if r == float64(int64(r)) && fv != float64(int64(fv)) {
			return []string{fmt.Sprintf("%s: want an integer, fake has %v", path, fv)}
		}
	case bool:
		if _, ok := fake.(bool); !ok {
			return []string{fmt.Sprintf("%s: want bool, fake has %T", path, fake)}
		}
	}
	return nil
}

var checkedHeaders = []string{"Content-Type", "WWW-Authenticate", "Retry-After", "Location", "x-ms-request-id", "x-ms-keyvault-service-version", "x-ms-keyvault-region"}

func compareRecorded(t *testing.T, rec recorded, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != rec.status {
		t.Fatalf("status %d, recorded %d: %s", resp.StatusCode, rec.status, body)
	}
	for _, h := range checkedHeaders {
		if rec.header.Get(h) != "" && resp.Header.Get(h) == "" {
			t.Errorf("header %s missing (recorded %q)", h, rec.header.Get(h))
		}
	}
	for _, h := range []string{"Retry-After", "WWW-Authenticate"} {
		if rec.header.Get(h) == "" && resp.Header.Get(h) != "" {
			t.Errorf("header %s sent (%q) where the service sends none", h, resp.Header.Get(h))
		}
	}
	if rec.body == nil {
		if len(body) != 0 {
			t.Errorf("fake sent a body where the service sends none: %s", body)
		}
		return
	}
	var fake any
	if err := json.Unmarshal(body, &fake); err != nil {
		t.Fatalf("fake body: %v: %s", err, body)
	}
	for _, d := range shapeDiff("$", rec.body, fake) {
		t.Error(d)
	}
}

func TestFidelityWithRecordings(t *testing.T) {
	if _, err := os.Stat(recordingsDir); err != nil {
		t.Skip("no recordings")
	}
	clock := newFakeClock()
	s := startServer(t, fakevault.Options{Now: clock.Now})
	do := func(method, path, body string) (*http.Response, []byte) { return rawDo(t, s, method, path, body) }
	const api = "?api-version=7.5"
	s.SetPendingDuration(time.Minute)

	t.Run("challenge", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "POST", `/certificates/\d+/create`, 401, 1)
		resp, body := rawDoAuth(t, s, "POST", "/certificates/ch/create"+api, "", "")
		compareRecorded(t, rec, resp, body)
	})
	crud := loadRecorded(t, "TestCRUD.json", "POST", `/certificates/\d+/create`, 202, 1)
	t.Run("create", func(t *testing.T) {
		resp, body := do("POST", "/certificates/crud/create"+api, crud.reqBody)
		compareRecorded(t, crud, resp, body)
	})
	t.Run("pending inProgress", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "GET", `/certificates/\d+/pending`, 200, 1)
		resp, body := do("GET", "/certificates/crud/pending"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	clock.Advance(2 * time.Minute)
	t.Run("pending completed", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "GET", `/certificates/\d+/pending`, 200, 2)
		resp, body := do("GET", "/certificates/crud/pending"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("get certificate", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "GET", `/certificates/\d+/\?`, 200, 1)
		resp, body := do("GET", "/certificates/crud/"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("update certificate", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "PATCH", `/certificates/\d+/\?`, 200, 1)
		resp, body := do("PATCH", "/certificates/crud/"+api, rec.reqBody)
		compareRecorded(t, rec, resp, body)
	})
	t.Run("delete certificate", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "DELETE", `/certificates/\d+\?`, 200, 1)
		resp, body := do("DELETE", "/certificates/crud"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("deleted not found", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "GET", `/deletedcertificates/\d+`, 404, 1)
		resp, body := do("GET", "/deletedcertificates/nothing"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("deleted certificate", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "GET", `/deletedcertificates/\d+`, 200, 1)
		resp, body := do("GET", "/deletedcertificates/crud"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("recover", func(t *testing.T) {
		rec := loadRecorded(t, "TestDeleteRecover.json", "POST", `/deletedcertificates/\d+/recover`, 200, 1)
		resp, body := do("POST", "/deletedcertificates/crud/recover"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("purge", func(t *testing.T) {
		rec := loadRecorded(t, "TestCRUD.json", "DELETE", `/deletedcertificates/\d+`, 204, 1)
		do("DELETE", "/certificates/crud"+api, "")
		resp, body := do("DELETE", "/deletedcertificates/crud"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("not found", func(t *testing.T) {
		rec := loadRecorded(t, "test_certificates_client.pyTestCertificateClienttest_40x_handling_2026-03-01-preview_.json", "GET", `/certificates/cert-that-does-not-exist/`, 404, 1)
		resp, body := do("GET", "/certificates/cert-that-does-not-exist/?api-version=2026-03-01-preview", "")
		compareRecorded(t, rec, resp, body)
		var got map[string]map[string]any
		_ = json.Unmarshal(body, &got)
		if got["error"]["message"] != rec.body.(map[string]any)["error"].(map[string]any)["message"] {
			t.Errorf("message %q differs from the service's", got["error"]["message"])
		}
	})

	// Lists: a tagged certificate, a pending (Unknown) one, deleted ones, a certificate with versions.
	s.SetPendingDuration(0)
	listRec := loadRecorded(t, "TestListCertificates.json", "POST", `/certificates/[\d-]+/create`, 202, 1)
	for _, n := range []string{"l-0", "l-1"} {
		if resp, body := do("POST", "/certificates/"+n+"/create"+api, listRec.reqBody); resp.StatusCode != 202 {
			t.Fatalf("create %s: %s", n, body)
		}
	}
	op := loadRecorded(t, "TestOperationCRUD.json", "POST", `/certificates/\d+/create`, 202, 1)
	t.Run("create Unknown", func(t *testing.T) {
		resp, body := do("POST", "/certificates/unknown/create"+api, op.reqBody)
		compareRecorded(t, op, resp, body)
	})
	t.Run("list includePending", func(t *testing.T) {
		rec := loadRecorded(t, "TestListCertificates.json", "GET", `/certificates\?`, 200, 1)
		resp, body := do("GET", "/certificates?api-version=7.5&includePending=true", "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("cancel Unknown", func(t *testing.T) {
		rec := loadRecorded(t, "TestOperationCRUD.json", "PATCH", `/certificates/\d+/pending`, 200, 1)
		resp, body := do("PATCH", "/certificates/unknown/pending"+api, rec.reqBody)
		compareRecorded(t, rec, resp, body)
		rec = loadRecorded(t, "TestOperationCRUD.json", "GET", `/certificates/\d+/pending`, 200, 1)
		resp, body = do("GET", "/certificates/unknown/pending"+api, "")
		compareRecorded(t, rec, resp, body)
		rec = loadRecorded(t, "TestOperationCRUD.json", "DELETE", `/certificates/\d+/pending`, 200, 1)
		resp, body = do("DELETE", "/certificates/unknown/pending"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("versions", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			do("POST", "/certificates/l-0/create"+api, listRec.reqBody)
		}
		rec := loadRecorded(t, "TestListCertificateVersions.json", "GET", `/certificates/\d+/versions`, 200, 1)
		resp, body := do("GET", "/certificates/l-0/versions"+api, "")
		compareRecorded(t, rec, resp, body)
	})
	t.Run("import", func(t *testing.T) {
		rec := loadRecorded(t, "TestImportCertificate.json", "POST", `/certificates/\d+/import`, 200, 1)
		resp, body := do("POST", "/certificates/imported/import"+api, rec.reqBody) // the recorded PFX itself
		compareRecorded(t, rec, resp, body)
		var b struct {
			X5T    string `json:"x5t"`
			Policy struct {
				X509 struct {
					Subject string `json:"subject"`
				} `json:"x509_props"`
			} `json:"policy"`
		}
		_ = json.Unmarshal(body, &b)
		want := rec.body.(map[string]any)
		if b.X5T != want["x5t"] {
			t.Errorf("x5t %s, service %s", b.X5T, want["x5t"])
		}
		if wantSubj := want["policy"].(map[string]any)["x509_props"].(map[string]any)["subject"]; b.Policy.X509.Subject != wantSubj {
			t.Errorf("subject %q, service %q", b.Policy.X509.Subject, wantSubj)
		}
	})
	t.Run("deleted list", func(t *testing.T) {
		do("DELETE", "/certificates/l-1"+api, "")
		do("DELETE", "/certificates/imported"+api, "")
		rec := loadRecorded(t, "TestListCertificates.json", "GET", `/deletedcertificates\?`, 200, 1)
		resp, body := do("GET", "/deletedcertificates?api-version=7.5&includePending=true", "")
		compareRecorded(t, rec, resp, body)
	})

	// Certificate-backed secrets, created with the JS SDK's own request bodies.
	for _, tc := range []struct{ file, name string }{
		{"recording_can_get_a_certificates_secret_in_pem_format.json", "js-pem"},
		{"recording_can_get_a_certificates_secret_in_pkcs_12_format.json", "js-pfx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create := loadRecorded(t, tc.file, "POST", `/create`, 202, 1)
			resp, body := do("POST", "/certificates/"+tc.name+"/create?api-version=2025-07-01", create.reqBody)
			compareRecorded(t, create, resp, body)
			rec := loadRecorded(t, tc.file, "GET", `/certificates/[^/]+/\?`, 200, 1)
			resp, body = do("GET", "/certificates/"+tc.name+"/?api-version=2025-07-01", "")
			compareRecorded(t, rec, resp, body)
			rec = loadRecorded(t, tc.file, "GET", `/secrets/[^/]+/\?`, 200, 1)
			resp, body = do("GET", "/secrets/"+tc.name+"/?api-version=2025-07-01", "")
			compareRecorded(t, rec, resp, body)
			var sec struct{ ContentType string }
			_ = json.Unmarshal(body, &sec)
			if want := rec.body.(map[string]any)["contentType"]; sec.ContentType != want {
				t.Errorf("contentType %q, service %q", sec.ContentType, want)
			}
			rec = loadRecorded(t, tc.file, "GET", `/secrets/[^/]+/\?`, 401, 1)
			resp, body = rawDoAuth(t, s, "GET", "/secrets/"+tc.name+"/?api-version=2025-07-01", "", "")
			compareRecorded(t, rec, resp, body)
		})
	}
	t.Run("outContentType error", func(t *testing.T) {
		rec := loadRecorded(t, "TestGetSecretWithOutContentType.json", "GET", `outContentType=`, 400, 1)
		resp, body := do("GET", "/secrets/js-pem/?api-version=2025-07-01&outContentType=application%2Fx-pem-file", "")
		compareRecorded(t, rec, resp, body)
	})
}

// TestShapeDiff checks the comparator itself.
func TestShapeDiff(t *testing.T) {
	var rec, fake any
	_ = json.Unmarshal([]byte(`{"a":1,"b":{"c":"x","n":null},"l":[{"x5t":"y","v":true},{"v":false}]}`), &rec)
	_ = json.Unmarshal([]byte(`{"a":1,"b":{"c":"x"},"l":[{"v":true},{"x5t":"z","v":false}]}`), &fake)
	if d := shapeDiff("$", rec, fake); len(d) != 0 {
		t.Fatal(d)
	}
	_ = json.Unmarshal([]byte(`{"a":1.5,"b":{"c":2},"l":[]}`), &fake)
	if d := shapeDiff("$", rec, fake); len(d) != 4 {
		t.Fatal(d)
	}
}
