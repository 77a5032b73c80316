package eventgrid

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDeliveries(t *testing.T) {
	contoso := func(name, version, typ string) Notification {
		return Notification{Vault: "contoso-kv", VaultHost: "contoso-kv.vault.azure.net", Certificate: name, Version: version, Type: typ}
	}
	fabrikam := Notification{Vault: "fabrikam-prod", VaultHost: "fabrikam-prod.vault.azure.net", Certificate: "old-mtls",
		Version: "8192a3b4c5d64e7f9a0b1c2d3e4f5a6b", Type: TypeCertificateExpired}
	tests := []struct {
		name        string
		file        string
		body        string // instead of file
		contentType string
		wantStatus  int
		want        []Notification
		wantMetrics counters
	}{{
		name: "Event Grid schema, one certificate event", file: "eventgrid-certificate-new-version.json", contentType: jsonType,
		wantStatus:  200,
		want:        []Notification{contoso("web-frontend", "9f1c2b7a4d5e4f60a1b2c3d4e5f60718", TypeCertificateNewVersionCreated)},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNewVersionCreated: 1},
	}, {
		name: "Event Grid schema, no Content-Type", file: "eventgrid-certificate-new-version.json",
		wantStatus:  200,
		want:        []Notification{contoso("web-frontend", "9f1c2b7a4d5e4f60a1b2c3d4e5f60718", TypeCertificateNewVersionCreated)},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNewVersionCreated: 1},
	}, {
		name: "Event Grid schema, batch of three certificate events, a secret and a key event", file: "eventgrid-batch.json",
		contentType: jsonType, wantStatus: 200,
		want: []Notification{
			contoso("api-gateway", "2a3b4c5d6e7f40818293a4b5c6d7e8f9", TypeCertificateNewVersionCreated),
			contoso("legacy-portal", "5e6f708192a34b5c8d9e0f1a2b3c4d5e", TypeCertificateNearExpiry),
			fabrikam,
		},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNewVersionCreated: 1,
			"notifications/" + TypeCertificateNearExpiry: 1, "notifications/" + TypeCertificateExpired: 1, "ignored/type": 2},
	}, {
		name: "Event Grid schema, secret event only", file: "eventgrid-secret-new-version.json", contentType: jsonType,
		wantStatus: 200, wantMetrics: counters{"deliveries/accepted": 1, "ignored/type": 1},
	}, {
		name: "CloudEvents structured single event", file: "cloudevents-certificate-new-version.json",
		contentType: "application/cloudevents+json; charset=utf-8", wantStatus: 200,
		want:        []Notification{contoso("web-frontend", "0718293a4b5c4d6e8f9a0b1c2d3e4f50", TypeCertificateNewVersionCreated)},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNewVersionCreated: 1},
	}, {
		name: "CloudEvents batch, camelCase data with numeric nbf/exp", file: "cloudevents-batch.json",
		contentType: "application/cloudevents-batch+json; charset=utf-8", wantStatus: 200,
		want: []Notification{contoso("api-gateway", "2a3b4c5d6e7f40818293a4b5c6d7e8f9", TypeCertificateNearExpiry), fabrikam},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNearExpiry: 1,
			"notifications/" + TypeCertificateExpired: 1, "ignored/type": 1},
	}, {
		name: "CloudEvents batch sent as application/json", file: "cloudevents-batch.json", contentType: jsonType,
		wantStatus: 200,
		want:       []Notification{contoso("api-gateway", "2a3b4c5d6e7f40818293a4b5c6d7e8f9", TypeCertificateNearExpiry), fabrikam},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateNearExpiry: 1,
			"notifications/" + TypeCertificateExpired: 1, "ignored/type": 1},
	}, {
		name: "certificate events with foreign host, bad name or no id are ignored, the good one notified",
		file: "eventgrid-bad-certificate-data.json", contentType: jsonType, wantStatus: 200,
		want:        []Notification{{Vault: "contoso-kv", Certificate: "good-one", Type: TypeCertificateExpired}},
		wantMetrics: counters{"deliveries/accepted": 1, "notifications/" + TypeCertificateExpired: 1, "ignored/malformed": 3},
	}, {
		name: "malformed JSON", file: "eventgrid-malformed.json", contentType: jsonType,
		wantStatus: 400, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "Event Grid array sent as a single CloudEvent", file: "eventgrid-certificate-new-version.json",
		contentType: "application/cloudevents+json", wantStatus: 400, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "single CloudEvent sent as a batch", file: "cloudevents-certificate-new-version.json",
		contentType: "application/cloudevents-batch+json", wantStatus: 400, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "Event Grid events sent as a CloudEvents batch are not CloudEvents", file: "eventgrid-certificate-new-version.json",
		contentType: "application/cloudevents-batch+json", wantStatus: 200,
		wantMetrics: counters{"deliveries/accepted": 1, "ignored/malformed": 1},
	}, {
		name: "unsupported media type", file: "eventgrid-certificate-new-version.json", contentType: "text/plain",
		wantStatus: 415, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "unreadable media type", file: "eventgrid-certificate-new-version.json", contentType: "application/json; =",
		wantStatus: 415, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "empty array", body: `[]`, contentType: jsonType, wantStatus: 400, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "JSON object for the Event Grid schema", body: `{"id":"x"}`, contentType: jsonType,
		wantStatus: 400, wantMetrics: counters{"deliveries/invalid": 1},
	}, {
		name: "elements that are not events", body: `[1, "two", null, [], {"id": 5}]`, contentType: jsonType,
		wantStatus: 200, wantMetrics: counters{"deliveries/accepted": 1, "ignored/malformed": 5},
	}, {
		name:        "CloudEvents 0.3 is not read",
		body:        `{"specversion":"0.3","id":"1","source":"/x","type":"Microsoft.KeyVault.CertificateExpired","data":{"VaultName":"contoso-kv","ObjectName":"a"}}`,
		contentType: "application/cloudevents+json", wantStatus: 200,
		wantMetrics: counters{"deliveries/accepted": 1, "ignored/malformed": 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			body := []byte(tt.body)
			if tt.file != "" {
				body = testdata(t, tt.file)
			}
			before := snapshot()
			w := e.post(tt.contentType, body)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d (%q), want %d", w.Code, w.Body.String(), tt.wantStatus)
			}
			if got := e.take(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("notifications\n got %+v\nwant %+v", got, tt.want)
			}
			checkDelta(t, before, tt.wantMetrics)
		})
	}
}

// TestCertificateEventData checks how the data of one CertificateExpired event becomes a Notification, or is
// ignored as malformed (want empty).
func TestCertificateEventData(t *testing.T) {
	tests := map[string]struct {
		data string
		want Notification
	}{
		"vault name from the Id host, version from its path": {`{"Id":"https://Contoso-KV.vault.azure.net/certificates/Web/abc123"}`,
			Notification{Vault: "contoso-kv", VaultHost: "contoso-kv.vault.azure.net", Certificate: "Web", Version: "abc123"}},
		"private endpoint host":            {`{"Id":"https://contoso-kv.privatelink.vaultcore.azure.net/certificates/web","VaultName":"contoso-kv"}`, Notification{Vault: "contoso-kv", VaultHost: "contoso-kv.privatelink.vaultcore.azure.net", Certificate: "web"}},
		"names only":                       {`{"VaultName":"Contoso-KV","ObjectName":"web","Version":"abc"}`, Notification{Vault: "contoso-kv", Certificate: "web", Version: "abc"}},
		"another object type":              {`{"VaultName":"contoso-kv","ObjectType":"Secret","ObjectName":"a"}`, Notification{}},
		"Id naming a secret":               {`{"Id":"https://contoso-kv.vault.azure.net/secrets/web/abc"}`, Notification{}},
		"Id with a longer path":            {`{"Id":"https://contoso-kv.vault.azure.net/certificates/web/abc/def"}`, Notification{}},
		"version of the Id disagrees":      {`{"Id":"https://contoso-kv.vault.azure.net/certificates/web/abc","Version":"def"}`, Notification{}},
		"name of the Id disagrees":         {`{"Id":"https://contoso-kv.vault.azure.net/certificates/web","ObjectName":"api"}`, Notification{}},
		"plain http Id":                    {`{"Id":"http://contoso-kv.vault.azure.net/certificates/web"}`, Notification{}},
		"Id with user info":                {`{"Id":"https://u:p@contoso-kv.vault.azure.net/certificates/web"}`, Notification{}},
		"vault name too short":             {`{"VaultName":"kv","ObjectName":"web"}`, Notification{}},
		"vault name starting with a digit": {`{"VaultName":"1contoso","ObjectName":"web"}`, Notification{}},
		"no vault":                         {`{"ObjectName":"web"}`, Notification{}},
		"no certificate":                   {`{"VaultName":"contoso-kv"}`, Notification{}},
		"certificate name too long":        {`{"VaultName":"contoso-kv","ObjectName":"` + strings.Repeat("a", 128) + `"}`, Notification{}},
		"certificate name with a dot":      {`{"VaultName":"contoso-kv","ObjectName":"web.example"}`, Notification{}},
		"version with a slash":             {`{"VaultName":"contoso-kv","ObjectName":"web","Version":"a/b"}`, Notification{}},
		"data that is a string":            {`"contoso-kv/web"`, Notification{}},
		"no data":                          {`null`, Notification{}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Options{})
			body := `[{"id":"1","topic":"/t","eventType":"` + TypeCertificateExpired + `","data":` + tt.data + `}]`
			before := snapshot()
			if w := e.post(jsonType, []byte(body)); w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			got := e.take()
			if tt.want == (Notification{}) {
				checkDelta(t, before, counters{"deliveries/accepted": 1, "ignored/malformed": 1})
				if len(got) != 0 {
					t.Errorf("notified %+v", got)
				}
				return
			}
			tt.want.Type = TypeCertificateExpired
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("notifications %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidationHandshake(t *testing.T) {
	body := testdata(t, "eventgrid-subscription-validation.json")
	t.Run("answered with the code when authenticated", func(t *testing.T) {
		e := newEnv(t, Options{})
		before := snapshot()
		w := e.serve(request(http.MethodPost, "/?code="+testSecret, jsonType, body, "aeg-event-type", "SubscriptionValidation"))
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
		}
		var got map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 1 || got["validationResponse"] != "7c0f3a52-91d4-4e2b-8f16-b3a9e0d5c874" {
			t.Errorf("answer %s (%v)", w.Body.String(), err)
		}
		checkDelta(t, before, counters{"deliveries/validation": 1})
		if n := e.take(); len(n) != 0 {
			t.Errorf("the handshake notified %v", n)
		}
	})
	t.Run("refused without authentication", func(t *testing.T) {
		e := newEnv(t, Options{})
		before := snapshot()
		w := e.serve(request(http.MethodPost, "/", jsonType, body))
		if w.Code != 401 || strings.Contains(w.Body.String(), "validationResponse") {
			t.Fatalf("status %d, body %q", w.Code, w.Body.String())
		}
		checkDelta(t, before, counters{"deliveries/unauthenticated": 1})
	})
	t.Run("HandshakeWithoutAuth answers the handshake but not a delivery", func(t *testing.T) {
		e := newEnv(t, Options{HandshakeWithoutAuth: true})
		if w := e.serve(request(http.MethodPost, "/", jsonType, body)); w.Code != 200 || !strings.Contains(w.Body.String(), "7c0f3a52") {
			t.Fatalf("handshake: status %d, body %q", w.Code, w.Body.String())
		}
		w := e.serve(request(http.MethodPost, "/", jsonType, testdata(t, "eventgrid-certificate-new-version.json")))
		if w.Code != 401 || len(e.take()) != 0 {
			t.Fatalf("unauthenticated delivery: status %d", w.Code)
		}
		if w := e.serve(request(http.MethodOptions, "/", "", nil, "WebHook-Request-Origin", "eventgrid.azure.net")); w.Code != 200 {
			t.Fatalf("unauthenticated OPTIONS handshake: status %d", w.Code)
		}
	})
	for name, b := range map[string]string{
		"with another event": `[{"id":"1","topic":"/t","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"abc"}},` +
			`{"id":"2","topic":"/t","eventType":"Microsoft.KeyVault.CertificateExpired","data":{"VaultName":"contoso-kv","ObjectName":"a"}}]`,
		"without a code":     `[{"id":"1","topic":"/t","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationUrl":"https://x"}}]`,
		"with a huge code":   `[{"id":"1","topic":"/t","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"` + strings.Repeat("a", 600) + `"}}]`,
		"with a number code": `[{"id":"1","topic":"/t","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":5}}]`,
	} {
		t.Run("invalid validation event "+name, func(t *testing.T) {
			e := newEnv(t, Options{})
			before := snapshot()
			if w := e.post(jsonType, []byte(b)); w.Code != 400 {
				t.Fatalf("status %d", w.Code)
			}
			checkDelta(t, before, counters{"deliveries/invalid": 1})
			if n := e.take(); len(n) != 0 {
				t.Errorf("notified %v", n)
			}
		})
	}
}

func TestAbuseProtectionHandshake(t *testing.T) {
	options := func(origin string, header ...string) *http.Request {
		h := append([]string{"WebHook-Request-Origin", origin, "WebHook-Request-Rate", "120"}, header...)
		return request(http.MethodOptions, "/", "", nil, h...)
	}
	auth := []string{"Authorization", "Bearer " + testSecret}
	tests := []struct {
		name       string
		opts       Options
		req        *http.Request
		wantStatus int
		wantRate   string
		wantResult string
	}{
		{"default rate", Options{}, options("eventgrid.azure.net", auth...), 200, "600", resultValidation},
		{"rate of 0.5/s", Options{RatePerSecond: 0.5}, options("eventgrid.azure.net", auth...), 200, "30", resultValidation},
		{"no rate limit", Options{RatePerSecond: -1}, options("eventgrid.azure.net", auth...), 200, "*", resultValidation},
		{"secret in the query", Options{}, request(http.MethodOptions, "/?code="+testSecret, "", nil, "WebHook-Request-Origin", "eventgrid.azure.net"), 200, "600", resultValidation},
		{"unauthenticated", Options{}, options("eventgrid.azure.net"), 401, "", resultUnauthenticated},
		{"no origin", Options{}, request(http.MethodOptions, "/", "", nil, auth...), 400, "", resultInvalid},
		{"origin that is not a DNS name", Options{}, options("eventgrid.azure.net, evil.example", auth...), 400, "", resultInvalid},
		{"origin too long", Options{}, options(strings.Repeat("a", 254), auth...), 400, "", resultInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			before := snapshot()
			w := e.serve(tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", w.Code, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				if got := w.Header().Get("WebHook-Allowed-Origin"); got != "eventgrid.azure.net" {
					t.Errorf("WebHook-Allowed-Origin %q", got)
				}
				if got := w.Header().Get("WebHook-Allowed-Rate"); got != tt.wantRate {
					t.Errorf("WebHook-Allowed-Rate %q, want %q", got, tt.wantRate)
				}
				if got := w.Header().Get("Allow"); got != "POST, OPTIONS" {
					t.Errorf("Allow %q", got)
				}
			} else if w.Header().Get("WebHook-Allowed-Origin") != "" {
				t.Errorf("refused handshake still allows the origin")
			}
			checkDelta(t, before, counters{"deliveries/" + tt.wantResult: 1})
		})
	}
}

func TestSharedSecrets(t *testing.T) {
	body := testdata(t, "eventgrid-certificate-new-version.json")
	two := []string{testSecret, otherSecret}
	tests := []struct {
		name   string
		opts   Options
		target string
		header []string
		want   int
	}{
		{"Authorization bearer", Options{Secrets: two}, "/", []string{"Authorization", "Bearer " + testSecret}, 200},
		{"second secret (rotation)", Options{Secrets: two}, "/", []string{"Authorization", "Bearer " + otherSecret}, 200},
		{"lower-case scheme", Options{Secrets: two}, "/", []string{"Authorization", "bearer " + testSecret}, 200},
		{"Authorization without scheme", Options{Secrets: two}, "/", []string{"Authorization", testSecret}, 401},
		{"Basic scheme", Options{Secrets: two}, "/", []string{"Authorization", "Basic " + testSecret}, 401},
		{"wrong secret", Options{Secrets: two}, "/", []string{"Authorization", "Bearer s3cret-for-event-grid-0003"}, 401},
		{"prefix of the secret", Options{Secrets: two}, "/", []string{"Authorization", "Bearer " + testSecret[:len(testSecret)-1]}, 401},
		{"secret plus a byte", Options{Secrets: two}, "/", []string{"Authorization", "Bearer " + testSecret + "x"}, 401},
		{"missing", Options{Secrets: two}, "/", nil, 401},
		{"query string", Options{Secrets: two}, "/?code=" + otherSecret, nil, 200},
		{"wrong query string", Options{Secrets: two}, "/?code=nope-nope-nope-nope", nil, 401},
		{"query parameter of another name", Options{Secrets: two}, "/?key=" + testSecret, nil, 401},
		{"configured query parameter", Options{Secrets: two, SecretQueryParameter: "key"}, "/?key=" + testSecret, nil, 200},
		{"custom header", Options{Secrets: two, SecretHeader: "X-Vaultcert-Secret"}, "/", []string{"X-Vaultcert-Secret", testSecret}, 200},
		{"custom header, wrong", Options{Secrets: two, SecretHeader: "X-Vaultcert-Secret"}, "/", []string{"X-Vaultcert-Secret", otherSecret + "0"}, 401},
		{"custom header configured, bearer not read", Options{Secrets: two, SecretHeader: "X-Vaultcert-Secret"}, "/", []string{"Authorization", "Bearer " + testSecret}, 401},
		{"custom header configured, query still read", Options{Secrets: two, SecretHeader: "X-Vaultcert-Secret"}, "/?code=" + testSecret, nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			before := snapshot()
			w := e.serve(request(http.MethodPost, tt.target, jsonType, body, tt.header...))
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			checkDelivered(t, e, before, w.Code)
			checkNoLeak(t, e, w, two...)
			if w.Code == 401 && w.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	notify := func(Notification) {}
	tests := map[string]Options{
		"no Notify":            {Secrets: []string{testSecret}},
		"no authentication":    {Notify: notify},
		"short secret":         {Notify: notify, Secrets: []string{"short"}},
		"huge secret":          {Notify: notify, Secrets: []string{strings.Repeat("x", 4097)}},
		"Entra without tenant": {Notify: notify, Entra: &EntraOptions{Audiences: []string{"api://x"}, HTTPClient: http.DefaultClient}},
		"Entra tenant with a path": {Notify: notify, Entra: &EntraOptions{TenantID: "t/../x", Audiences: []string{"api://x"},
			HTTPClient: http.DefaultClient}},
		"Entra for any tenant": {Notify: notify, Entra: &EntraOptions{TenantID: "Organizations", Audiences: []string{"api://x"},
			HTTPClient: http.DefaultClient}},
		"Entra without audience": {Notify: notify, Entra: &EntraOptions{TenantID: "t", HTTPClient: http.DefaultClient}},
		"Entra empty audience":   {Notify: notify, Entra: &EntraOptions{TenantID: "t", Audiences: []string{""}, HTTPClient: http.DefaultClient}},
		"Entra without client":   {Notify: notify, Entra: &EntraOptions{TenantID: "t", Audiences: []string{"api://x"}}},
		"Entra over http": {Notify: notify, Entra: &EntraOptions{TenantID: "t", Audiences: []string{"api://x"},
			HTTPClient: http.DefaultClient, AuthorityHost: "http://login.microsoftonline.com/"}},
	}
	for name, opts := range tests {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New accepted the options", name)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, Options{})
	before := snapshot()
	w := e.serve(request(http.MethodGet, "/", "", nil, "Authorization", "Bearer "+testSecret))
	if w.Code != 405 || w.Header().Get("Allow") != "POST, OPTIONS" {
		t.Fatalf("status %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	checkDelta(t, before, counters{"deliveries/invalid": 1})
}

func TestBodyAndEventLimits(t *testing.T) {
	events := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("[")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `{"id":"%d","topic":"/t","eventType":"Microsoft.KeyVault.CertificateExpired","data":{"VaultName":"contoso-kv","ObjectName":"c%d"}}`, i, i)
		}
		b.WriteString("]")
		return b.Bytes()
	}
	big := append([]byte(`[{"id":"1","topic":"/t","eventType":"x","data":"`), bytes.Repeat([]byte("a"), DefaultMaxBodyBytes)...)
	big = append(big, []byte(`"}]`)...)
	tests := []struct {
		name     string
		opts     Options
		body     []byte
		chunked  bool // no Content-Length: the limit is found while reading
		want     int
		notified int
	}{
		{"body over the limit, announced", Options{MaxBodyBytes: 1024}, events(20), false, 413, 0},
		{"body over the default limit, chunked", Options{}, big, true, 413, 0},
		{"more events than allowed", Options{MaxEvents: 3}, events(4), false, 413, 0},
		{"as many events as allowed", Options{MaxEvents: 3}, events(3), false, 200, 3},
		{"more events than the default", Options{}, events(DefaultMaxEvents + 1), false, 413, 0},
		{"as many events as the default", Options{}, events(DefaultMaxEvents), false, 200, DefaultMaxEvents},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			r := request(http.MethodPost, "/", jsonType, tt.body, "Authorization", "Bearer "+testSecret)
			if tt.chunked {
				r.ContentLength = -1
			}
			before := snapshot()
			if w := e.serve(r); w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if n := len(e.take()); n != tt.notified {
				t.Errorf("%d notifications, want %d", n, tt.notified)
			}
			if tt.want == 413 {
				checkDelta(t, before, counters{"deliveries/invalid": 1})
			}
		})
	}
	t.Run("unauthenticated body is not read", func(t *testing.T) {
		e := newEnv(t, Options{MaxBodyBytes: 16})
		r := request(http.MethodPost, "/", jsonType, events(10))
		if w := e.serve(r); w.Code != 401 {
			t.Fatalf("status %d", w.Code)
		}
	})
}

func TestDuplicates(t *testing.T) {
	one := testdata(t, "eventgrid-certificate-new-version.json")
	t.Run("a repeated delivery notifies once", func(t *testing.T) {
		e := newEnv(t, Options{})
		if w := e.post(jsonType, one); w.Code != 200 || len(e.take()) != 1 {
			t.Fatalf("first delivery: status %d", w.Code)
		}
		before := snapshot()
		if w := e.post(jsonType, one); w.Code != 200 {
			t.Fatalf("second delivery: status %d", w.Code)
		}
		if n := e.take(); len(n) != 0 {
			t.Errorf("the repeat notified %v", n)
		}
		checkDelta(t, before, counters{"deliveries/duplicate": 1, "ignored/duplicate": 1})
	})
	t.Run("the same ID twice in one delivery", func(t *testing.T) {
		e := newEnv(t, Options{})
		var events []json.RawMessage
		if err := json.Unmarshal(one, &events); err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal([]json.RawMessage{events[0], events[0]})
		before := snapshot()
		if w := e.post(jsonType, body); w.Code != 200 || len(e.take()) != 1 {
			t.Fatalf("status %d", w.Code)
		}
		checkDelta(t, before, counters{"deliveries/accepted": 1, "ignored/duplicate": 1, "notifications/" + TypeCertificateNewVersionCreated: 1})
	})
	t.Run("the same ID from another source is another event", func(t *testing.T) {
		e := newEnv(t, Options{})
		e.post(jsonType, one)
		other := bytes.Replace(one, []byte("vaults/contoso-kv"), []byte("vaults/contoso-kv2"), 1)
		if w := e.post(jsonType, other); w.Code != 200 || len(e.take()) != 2 {
			t.Fatalf("status %d", w.Code)
		}
	})
	t.Run("the window forgets the oldest IDs", func(t *testing.T) {
		e := newEnv(t, Options{DedupeWindow: 2})
		ev := func(id string) []byte {
			return []byte(`[{"id":"` + id + `","topic":"/t","eventType":"Microsoft.KeyVault.CertificateExpired","data":{"VaultName":"contoso-kv","ObjectName":"c"}}]`)
		}
		for _, id := range []string{"a", "b", "a", "c", "b", "a"} {
			e.post(jsonType, ev(id))
		}
		// a, b new; a repeated; c evicts a; b still remembered; a new again.
		if n := len(e.take()); n != 4 {
			t.Errorf("%d notifications, want 4", n)
		}
	})
}

func TestRecentEvents(t *testing.T) {
	r := newRecentEvents(3)
	k := func(s string) eventKey { return keyOf("/src", s) }
	for _, s := range []string{"1", "2", "3"} {
		if !r.add(k(s)) {
			t.Fatalf("%s not new", s)
		}
	}
	if r.add(k("2")) || !r.add(k("4")) || r.add(k("3")) || !r.add(k("1")) {
		t.Fatal("window does not evict oldest first")
	}
	if len(r.set) != 3 {
		t.Fatalf("set holds %d keys, want 3", len(r.set))
	}
	if keyOf("a", "bc") == keyOf("ab", "c") {
		t.Fatal("source and id run together")
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Options{RatePerSecond: 1, Burst: 2})
	one := testdata(t, "eventgrid-secret-new-version.json")
	// Unauthenticated requests do not spend the bucket.
	for range 5 {
		if w := e.serve(request(http.MethodPost, "/", jsonType, one)); w.Code != 401 {
			t.Fatalf("status %d", w.Code)
		}
	}
	for i := range 2 {
		if w := e.post(jsonType, one); w.Code != 200 {
			t.Fatalf("request %d: status %d", i, w.Code)
		}
	}
	before := snapshot()
	w := e.post(jsonType, one)
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	checkDelta(t, before, counters{"deliveries/rate_limited": 1})
	e.advance(time.Second)
	if w := e.post(jsonType, one); w.Code != 200 {
		t.Fatalf("after a second: status %d", w.Code)
	}
	if w := e.post(jsonType, one); w.Code != 429 {
		t.Fatalf("bucket refilled too fast: status %d", w.Code)
	}

	slow := newEnv(t, Options{RatePerSecond: 0.1, Burst: 1})
	slow.post(jsonType, one)
	if w := slow.post(jsonType, one); w.Code != 429 || w.Header().Get("Retry-After") != "10" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}

	unlimited := newEnv(t, Options{RatePerSecond: -1, Burst: 1})
	for i := range 50 {
		if w := unlimited.post(jsonType, one); w.Code != 200 {
			t.Fatalf("request %d without a limit: status %d", i, w.Code)
		}
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	e := newEnv(t, Options{RatePerSecond: -1})
	done := make(chan int)
	for g := range 8 {
		go func() {
			ok := 0
			for i := range 25 {
				// Every goroutine sends the same 25 IDs: each ID is notified once in all.
				body := fmt.Appendf(nil, `[{"id":"%d","topic":"/t","eventType":"Microsoft.KeyVault.CertificateExpired","data":{"VaultName":"contoso-kv","ObjectName":"c%d"}}]`, i, g)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, request(http.MethodPost, "/", jsonType, body, "Authorization", "Bearer "+testSecret))
				if w.Code == 200 {
					ok++
				}
			}
			done <- ok
		}()
	}
	total := 0
	for range 8 {
		total += <-done
	}
	if total != 200 {
		t.Errorf("%d of 200 deliveries answered 200", total)
	}
	if n := len(e.take()); n != 25 {
		t.Errorf("%d notifications, want 25", n)
	}
}

// FuzzServeHTTP feeds arbitrary bodies and media types to an authenticated handler: it must answer, not panic,
// and whatever it notifies must be within Key Vault's bounds.
func FuzzServeHTTP(f *testing.F) {
	for _, name := range []string{"eventgrid-certificate-new-version.json", "eventgrid-batch.json", "eventgrid-subscription-validation.json",
		"cloudevents-batch.json", "eventgrid-malformed.json", "eventgrid-bad-certificate-data.json"} {
		f.Add(jsonType, testdata(f, name))
	}
	f.Add("application/cloudevents+json", testdata(f, "cloudevents-certificate-new-version.json"))
	f.Add("application/cloudevents-batch+json", testdata(f, "cloudevents-batch.json"))
	var got []Notification // the fuzz function runs one input at a time per process
	h, err := New(Options{Secrets: []string{testSecret}, RatePerSecond: -1, MaxBodyBytes: 64 << 10,
		Notify: func(n Notification) { got = append(got, n) }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		got = got[:0]
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Authorization", "Bearer "+testSecret)
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200, 400, 413, 415:
		default:
			t.Fatalf("status %d", w.Code)
		}
		for _, n := range got {
			if !validVaultName(n.Vault) || !validObjectName(n.Certificate, maxObjectNameLen) || len(n.Version) > maxVersionLen ||
				len(n.VaultHost) > maxHostLen {
				t.Fatalf("out-of-bounds notification %+v", n)
			}
		}
	})
}

// TestNotificationFromIdWithPort: a vault reached on another port (a private endpoint, a test vault) keeps the port
// in VaultHost and not in the vault name; anything but digits after the colon is refused.
func TestNotificationFromIdWithPort(t *testing.T) {
	data := []byte(`{"Id":"https://localhost:8443/certificates/web/0123abcd","ObjectType":"Certificate","ObjectName":"web"}`)
	n, err := notificationFrom(TypeCertificateNewVersionCreated, data)
	if err != nil {
		t.Fatal(err)
	}
	if n.VaultHost != "localhost:8443" || n.Vault != "localhost" || n.Certificate != "web" || n.Version != "0123abcd" {
		t.Errorf("notification %+v", n)
	}
	for _, id := range []string{"https://localhost:84x3/certificates/web", "https://kv.vault.azure.net:/certificates/web", "https://a_b.vault.azure.net/certificates/web"} {
		if _, err := notificationFrom(TypeCertificateNewVersionCreated, []byte(`{"Id":"`+id+`"}`)); err == nil {
			t.Errorf("Id %s was accepted", id)
		}
	}
}
