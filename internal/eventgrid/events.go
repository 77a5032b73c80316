package eventgrid

import (
	"encoding/json"
	"errors"
	"mime"
	"net/url"
	"strings"
)

// Event types the handler knows.
const (
	// TypeCertificateNewVersionCreated is sent when a certificate or a new version of it is created.
	TypeCertificateNewVersionCreated = "Microsoft.KeyVault.CertificateNewVersionCreated"
	// TypeCertificateNearExpiry is sent when the current version of a certificate is about to expire.
	TypeCertificateNearExpiry = "Microsoft.KeyVault.CertificateNearExpiry"
	// TypeCertificateExpired is sent when the current version of a certificate has expired.
	TypeCertificateExpired = "Microsoft.KeyVault.CertificateExpired"
	// TypeSubscriptionValidation is Event Grid's handshake event (Event Grid schema only).
	TypeSubscriptionValidation = "Microsoft.EventGrid.SubscriptionValidationEvent"
)

// certificateEventTypes are the event types that produce a Notification.
var certificateEventTypes = []string{TypeCertificateNewVersionCreated, TypeCertificateNearExpiry, TypeCertificateExpired}

// Media types of the two schemas. Event Grid's own schema comes as application/json.
const (
	mediaJSON            = "application/json"
	mediaCloudEvent      = "application/cloudevents+json"
	mediaCloudEventBatch = "application/cloudevents-batch+json"
)

// Bounds on what a sender controls. Key Vault names certificates with at most 127 characters and vaults with
// 3 to 24; versions are 32 hexadecimal characters, 64 leaves room.
const (
	maxEventIDLen        = 256
	maxSourceLen         = 1024
	maxValidationCodeLen = 512
	maxObjectNameLen     = 127
	maxVersionLen        = 64
	maxHostLen           = 253
	minVaultNameLen      = 3
	maxVaultNameLen      = 24
)

// errBody is a delivery the handler cannot read; its message is fixed text, safe to answer and log.
type errBody struct {
	status int
	msg    string
}

func (e *errBody) Error() string { return e.msg }

// wireEvent holds the fields of both schemas the handler reads: Event Grid's (eventType, topic) and
// CloudEvents 1.0's (specversion, type, source). Unknown fields are ignored.
type wireEvent struct {
	ID          string          `json:"id"`
	EventType   string          `json:"eventType"`
	Topic       string          `json:"topic"`
	SpecVersion string          `json:"specversion"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	Data        json.RawMessage `json:"data"`
}

// event is one decoded event of a delivery; err is set when the element could not be read.
type event struct {
	id, typ, source string
	data            json.RawMessage
	err             error
}

// decodeDelivery reads a request body into its events. The media type decides the shape: a CloudEvent object
// (application/cloudevents+json), an array of CloudEvents (application/cloudevents-batch+json), or an array of
// Event Grid events (application/json, or no Content-Type; CloudEvents in such an array are read too). An
// element that is not a readable event comes back with err set rather than failing the whole delivery, so one
// odd event does not cost the others; a body that is not JSON of the right shape fails.
func decodeDelivery(contentType string, body []byte, maxEvents int) ([]event, error) {
	media := mediaJSON
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, &errBody{415, "unreadable Content-Type"}
		}
		media = mt
	}
	var raws []json.RawMessage
	cloudEventsOnly := true
	switch media {
	case mediaCloudEvent:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, &errBody{400, "body is not a JSON object"}
		}
		raws = []json.RawMessage{body}
	case mediaCloudEventBatch, mediaJSON:
		cloudEventsOnly = media == mediaCloudEventBatch
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, &errBody{400, "body is not a JSON array"}
		}
	default:
		return nil, &errBody{415, "unsupported Content-Type: want application/json, " + mediaCloudEvent + " or " + mediaCloudEventBatch}
	}
	switch {
	case len(raws) == 0:
		return nil, &errBody{400, "no events"}
	case len(raws) > maxEvents:
		return nil, &errBody{413, "too many events in one delivery"}
	}
	events := make([]event, len(raws))
	for i, raw := range raws {
		events[i] = decodeEvent(raw, cloudEventsOnly)
	}
	return events, nil
}

// decodeEvent reads one event of either schema.
func decodeEvent(raw json.RawMessage, cloudEventsOnly bool) event {
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return event{err: errors.New("not an event object")}
	}
	e := event{id: w.ID, typ: w.EventType, source: w.Topic, data: w.Data}
	switch {
	case w.SpecVersion != "":
		if w.SpecVersion != "1.0" {
			return event{err: errors.New("unsupported CloudEvents specversion")}
		}
		e.typ, e.source = w.Type, w.Source
	case cloudEventsOnly:
		return event{err: errors.New("not a CloudEvent: no specversion")}
	}
	switch {
	case e.id == "" || len(e.id) > maxEventIDLen:
		e.err = errors.New("missing or oversized event id")
	case e.typ == "":
		e.err = errors.New("missing event type")
	case len(e.source) > maxSourceLen:
		e.err = errors.New("oversized event source")
	}
	return e
}

// validationCode returns the code of an Event Grid subscription validation event.
func validationCode(data json.RawMessage) (string, error) {
	var d struct {
		ValidationCode string `json:"validationCode"`
	}
	if err := json.Unmarshal(data, &d); err != nil || d.ValidationCode == "" {
		return "", errors.New("validation event without validationCode")
	}
	if len(d.ValidationCode) > maxValidationCodeLen {
		return "", errors.New("oversized validationCode")
	}
	return d.ValidationCode, nil
}

// keyVaultData is the data of Key Vault's events. Key Vault sends PascalCase names (Id, VaultName, ...); the
// SDKs document camelCase, and encoding/json matches either. NBF and EXP are not read: the controller reads the
// certificate itself, so the event only says which one to look at.
type keyVaultData struct {
	ID         string `json:"Id"`
	VaultName  string `json:"VaultName"`
	ObjectType string `json:"ObjectType"`
	ObjectName string `json:"ObjectName"`
	Version    string `json:"Version"`
}

// notificationFrom turns the data of a certificate event into a Notification. Fields given twice (VaultName and
// the host of Id, ObjectName and the path of Id) must agree; every field is bounded and of Key Vault's alphabet,
// so what reaches Notify is safe to log and to use in a lookup.
func notificationFrom(typ string, data json.RawMessage) (Notification, error) {
	var d keyVaultData
	if err := json.Unmarshal(data, &d); err != nil {
		return Notification{}, errors.New("unreadable Key Vault event data")
	}
	if d.ObjectType != "" && !strings.EqualFold(d.ObjectType, "Certificate") {
		return Notification{}, errors.New("certificate event about another object type")
	}
	n := Notification{Type: typ, Vault: strings.ToLower(d.VaultName), Certificate: d.ObjectName, Version: d.Version}
	if d.ID != "" {
		host, name, version, err := parseObjectID(d.ID)
		if err != nil {
			return Notification{}, err
		}
		n.VaultHost = host
		hostname, _, _ := strings.Cut(host, ":") // a port (a private endpoint, a test vault) is not part of the name
		vault, _, _ := strings.Cut(hostname, ".")
		if n.Vault, err = agree(n.Vault, vault, "VaultName and the host of Id differ"); err != nil {
			return Notification{}, err
		}
		if n.Certificate, err = agree(n.Certificate, name, "ObjectName and Id differ"); err != nil {
			return Notification{}, err
		}
		if n.Version, err = agree(n.Version, version, "Version and Id differ"); err != nil {
			return Notification{}, err
		}
	}
	switch {
	case !validVaultName(n.Vault):
		return Notification{}, errors.New("missing or invalid vault name")
	case !validObjectName(n.Certificate, maxObjectNameLen):
		return Notification{}, errors.New("missing or invalid certificate name")
	case n.Version != "" && !validObjectName(n.Version, maxVersionLen):
		return Notification{}, errors.New("invalid version")
	}
	return n, nil
}

// agree returns the value of a field given twice, one of them possibly empty. Names compare case-insensitively,
// as Key Vault compares them.
func agree(given, derived, msg string) (string, error) {
	switch {
	case given == "":
		return derived, nil
	case derived == "" || strings.EqualFold(given, derived):
		return given, nil
	}
	return "", errors.New(msg)
}

// parseObjectID reads https://{vault host}/certificates/{name}[/{version}].
func parseObjectID(id string) (host, name, version string, err error) {
	u, perr := url.Parse(id)
	if perr != nil || u.Scheme != "https" || u.User != nil || u.Host == "" {
		return "", "", "", errors.New("Id is not an https URL")
	}
	host = strings.ToLower(u.Host)
	hostname, port := strings.ToLower(u.Hostname()), u.Port()
	if len(host) > maxHostLen || strings.IndexFunc(hostname, func(r rune) bool { return !isHostRune(r) }) >= 0 ||
		strings.IndexFunc(port, func(r rune) bool { return r < '0' || r > '9' }) >= 0 || host != hostname+portSuffix(port) {
		return "", "", "", errors.New("invalid host in Id")
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || !strings.EqualFold(segs[0], "certificates") {
		return "", "", "", errors.New("Id is not a certificate identifier")
	}
	name = segs[1]
	if len(segs) == 3 {
		version = segs[2]
	}
	return host, name, version, nil
}

// portSuffix is ":port", or "" without one.
func portSuffix(port string) string {
	if port == "" {
		return ""
	}
	return ":" + port
}

// validVaultName reports whether s is a Key Vault name: 3-24 letters, digits and hyphens, starting with a letter.
func validVaultName(s string) bool {
	return len(s) >= minVaultNameLen && len(s) <= maxVaultNameLen && isLetter(rune(s[0])) && validObjectName(s, maxVaultNameLen)
}

// validObjectName reports whether s is 1 to max letters, digits and hyphens (Key Vault's object name alphabet,
// which also covers versions).
func validObjectName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !isLetter(r) && !isDigit(r) && r != '-' {
			return false
		}
	}
	return true
}

// isHostRune reports whether r may appear in a host[:port]: ASCII letters, digits, dot, hyphen and colon.
func isHostRune(r rune) bool { return isLetter(r) || isDigit(r) || r == '.' || r == '-' || r == ':' }

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func isDigit(r rune) bool { return r >= '0' && r <= '9' }
