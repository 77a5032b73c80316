package eventgrid

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultSecretHeader         = "Authorization"
	DefaultSecretQueryParameter = "code"
	DefaultMaxBodyBytes         = 1 << 20
	DefaultMaxEvents            = 100
	DefaultDedupeWindow         = 10000
	DefaultRatePerSecond        = 10.0
	DefaultBurst                = 100
)

// Bounds on shared secrets: shorter ones are guessable, and Event Grid limits a header value to 4 KiB.
const (
	minSecretLen = 16
	maxSecretLen = 4096
)

// allowedMethods is the Allow header of every answer that names the methods.
const allowedMethods = "POST, OPTIONS"

// unavailableRetryAfter is the Retry-After of 503 answers: Event Grid retries them, by then the keys may be back.
const unavailableRetryAfter = "30"

// Notification says that a Key Vault certificate changed: the controller should read it again.
type Notification struct {
	// Vault is the vault name in lower case, e.g. "myvault": VaultName of the event, or the first label of the
	// host of its Id.
	Vault string
	// VaultHost is the host of the event's Id in lower case, e.g. "myvault.vault.azure.net"; empty when the
	// event carried no Id. It is what the sender wrote: match it against the vaults of configured connections,
	// never connect to it.
	VaultHost string
	// Certificate is the certificate name as the event gave it (ObjectName). Key Vault names are
	// case-insensitive.
	Certificate string
	// Version is the certificate version the event names; it may be empty.
	Version string
	// Type is the event type: TypeCertificateNewVersionCreated, TypeCertificateNearExpiry or
	// TypeCertificateExpired.
	Type string
}

// Options configures New. Secrets and Entra may both be set: a request is authenticated when either accepts it.
// At least one of them is required; there is no unauthenticated mode.
type Options struct {
	// Notify receives one Notification per new certificate event. Required. It is called from ServeHTTP, one
	// request's events in order and requests concurrently, and must not block: queue the value (a buffered
	// channel with a non-blocking send, a workqueue) and return. The answer to Event Grid waits for it, and
	// Event Grid retries a delivery not answered within 30 s.
	Notify func(Notification)

	// Secrets are the accepted shared secrets, each at least 16 and at most 4096 bytes. Several may be given
	// so a secret can be rotated: add the new one, move the subscription to it, then drop the old one. They are
	// compared in constant time, by SHA-256 digest.
	Secrets []string
	// SecretHeader is the request header that may carry a secret. For Authorization the value must be
	// "Bearer <secret>"; for any other header (set with Event Grid's --delivery-attribute-mapping) the value
	// is the secret itself. Empty means DefaultSecretHeader.
	SecretHeader string
	// SecretQueryParameter is the query-string parameter that may carry a secret
	// (https://host/path?code=<secret>). Empty means DefaultSecretQueryParameter.
	SecretQueryParameter string

	// Entra, when set, accepts Microsoft Entra ID tokens in "Authorization: Bearer <token>".
	Entra *EntraOptions

	// HandshakeWithoutAuth answers the two handshakes (Event Grid's validation event, CloudEvents' OPTIONS
	// request) even when the request is not authenticated; deliveries still need authentication. Off by
	// default: Event Grid sends the query string and the Entra token with the handshake as with every
	// delivery. Answering a handshake only lets Event Grid start sending, each delivery is still checked, so
	// this is safe to turn on if a subscription whose secret travels in a delivery attribute cannot validate.
	// Unauthenticated requests then get their body read (within MaxBodyBytes) and spend the rate limit.
	HandshakeWithoutAuth bool

	// MaxBodyBytes bounds a request body; larger requests get 413. Zero means DefaultMaxBodyBytes. Event
	// Grid's --preferred-batch-size-in-kilobytes must stay below it.
	MaxBodyBytes int64
	// MaxEvents bounds the events of one delivery; more get 413. Zero means DefaultMaxEvents. Event Grid's
	// --max-events-per-batch must not exceed it.
	MaxEvents int
	// DedupeWindow is how many recent event IDs are remembered: an event seen again among them (Event Grid
	// delivers at least once) produces no second Notification. Zero means DefaultDedupeWindow.
	DedupeWindow int

	// RatePerSecond is the sustained rate of requests accepted after authentication; beyond it (and Burst) the
	// answer is 429 with Retry-After, which Event Grid retries later. Zero means DefaultRatePerSecond; a
	// negative value turns the limit off.
	RatePerSecond float64
	// Burst is how many requests may come at once above the sustained rate. Zero means DefaultBurst.
	Burst int

	// Now is the clock of the rate limit, token expiry and the key cache; nil means time.Now.
	Now func() time.Time
	// Log receives why requests were refused (never a secret, a token or a body) at V(1), and failures to fetch
	// the Entra keys as errors. The zero Logger discards.
	Log logr.Logger
}

// Handler is the webhook: an http.Handler answering Event Grid's POSTs and OPTIONS requests on whatever path it
// is mounted. It does not terminate TLS, so serve it with an https server, whose timeouts and header limits
// bound slow or bloated requests. Build it with New; it is safe for concurrent use.
type Handler struct {
	opts          Options
	authorization bool       // SecretHeader is Authorization, whose value is "Bearer <secret>"
	secrets       [][32]byte // SHA-256 of each secret
	tokens        *tokenValidator
	limiter       *rate.Limiter // nil: no limit
	allowedRate   string        // WebHook-Allowed-Rate: requests per minute, or "*"
	recent        *recentEvents
	now           func() time.Time
	log           logr.Logger
}

// New checks opts, fills in the defaults and returns the handler.
func New(opts Options) (*Handler, error) {
	if opts.Notify == nil {
		return nil, errors.New("eventgrid: Notify is required")
	}
	if len(opts.Secrets) == 0 && opts.Entra == nil {
		return nil, errors.New("eventgrid: configure Secrets, Entra or both: the webhook does not run unauthenticated")
	}
	if opts.SecretHeader == "" {
		opts.SecretHeader = DefaultSecretHeader
	}
	if opts.SecretQueryParameter == "" {
		opts.SecretQueryParameter = DefaultSecretQueryParameter
	}
	opts.MaxBodyBytes = orDefault(opts.MaxBodyBytes, DefaultMaxBodyBytes)
	opts.MaxEvents = orDefault(opts.MaxEvents, DefaultMaxEvents)
	opts.DedupeWindow = orDefault(opts.DedupeWindow, DefaultDedupeWindow)
	opts.Burst = orDefault(opts.Burst, DefaultBurst)
	if opts.RatePerSecond == 0 {
		opts.RatePerSecond = DefaultRatePerSecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{
		opts:          opts,
		authorization: strings.EqualFold(opts.SecretHeader, "Authorization"),
		recent:        newRecentEvents(opts.DedupeWindow),
		now:           opts.Now,
		log:           opts.Log,
		allowedRate:   "*",
	}
	for _, s := range opts.Secrets {
		if len(s) < minSecretLen || len(s) > maxSecretLen {
			return nil, fmt.Errorf("eventgrid: every secret must be %d to %d bytes long", minSecretLen, maxSecretLen)
		}
		h.secrets = append(h.secrets, sha256.Sum256([]byte(s)))
	}
	if opts.Entra != nil {
		v, err := newTokenValidator(*opts.Entra, opts.Now, opts.Log)
		if err != nil {
			return nil, err
		}
		h.tokens = v
	}
	if opts.RatePerSecond > 0 {
		h.limiter = rate.NewLimiter(rate.Limit(opts.RatePerSecond), opts.Burst)
		h.allowedRate = strconv.Itoa(max(1, int(math.Min(opts.RatePerSecond*60, math.MaxInt32))))
	}
	return h, nil
}

// ServeHTTP implements http.Handler. In order: the method (POST or OPTIONS, else 405), authentication (401, or
// 503 when the Entra keys cannot be fetched), the rate limit (429), then the handshake or the delivery: body
// size (413), media type (415), JSON (400), event count (413). A delivery that passes gets 200 whatever its
// events were: events of other types and malformed events are counted and ignored, repeated ones produce no
// second Notification.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodOptions {
		w.Header().Set("Allow", allowedMethods)
		h.refuse(w, r, http.StatusMethodNotAllowed, resultInvalid, "method not allowed")
		return
	}
	authenticated, err := h.authenticate(r)
	switch {
	case err != nil:
		w.Header().Set("Retry-After", unavailableRetryAfter)
		h.refuse(w, r, http.StatusServiceUnavailable, resultUnavailable, "cannot check the token now")
		return
	case !authenticated && !h.opts.HandshakeWithoutAuth:
		h.refuse(w, r, http.StatusUnauthorized, resultUnauthenticated, "unauthenticated")
		return
	}
	if wait, ok := h.admit(); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(wait))
		h.refuse(w, r, http.StatusTooManyRequests, resultRateLimited, "too many requests")
		return
	}
	if r.Method == http.MethodOptions {
		h.abuseProtectionHandshake(w, r)
		return
	}
	events, err := h.readDelivery(w, r)
	if err != nil && !authenticated {
		h.refuse(w, r, http.StatusUnauthorized, resultUnauthenticated, "unauthenticated")
		return
	}
	if err != nil {
		eb, ok := errors.AsType[*errBody](err)
		if !ok {
			eb = &errBody{http.StatusBadRequest, "unreadable body"}
		}
		h.refuse(w, r, eb.status, resultInvalid, eb.msg)
		return
	}
	if i := slices.IndexFunc(events, func(e event) bool { return e.typ == TypeSubscriptionValidation }); i >= 0 {
		if len(events) > 1 {
			h.refuse(w, r, http.StatusBadRequest, resultInvalid, "a validation event must come alone")
			return
		}
		h.validationHandshake(w, r, events[i])
		return
	}
	if !authenticated {
		h.refuse(w, r, http.StatusUnauthorized, resultUnauthenticated, "unauthenticated")
		return
	}
	result := h.process(events)
	deliveriesTotal.WithLabelValues(result).Inc()
	w.WriteHeader(http.StatusOK)
}

// authenticate reports whether r carries an accepted secret or Entra token. The error is for a token that
// could not be checked because the keys are unavailable: that is not the sender's fault, and a 401 would make
// Event Grid drop the events, so it gets 503.
func (h *Handler) authenticate(r *http.Request) (bool, error) {
	bearer := bearerToken(r.Header.Get("Authorization"))
	if len(h.secrets) > 0 {
		fromHeader := bearer
		if !h.authorization {
			fromHeader = strings.TrimSpace(r.Header.Get(h.opts.SecretHeader))
		}
		// Both places are checked whatever the first gave, so timing tells nothing about which matched.
		inHeader := h.secretMatches(fromHeader)
		inQuery := h.secretMatches(r.URL.Query().Get(h.opts.SecretQueryParameter))
		if inHeader || inQuery {
			return true, nil
		}
	}
	if h.tokens == nil || strings.Count(bearer, ".") != 2 {
		return false, nil
	}
	err := h.tokens.validate(r.Context(), bearer)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errKeysUnavailable):
		return false, err
	}
	h.log.V(1).Info("Event Grid request refused: token not accepted", "remote", r.RemoteAddr, "reason", bounded(err.Error(), 200))
	return false, nil
}

// secretMatches compares s with every secret in constant time. Comparing digests hides the secrets' lengths.
func (h *Handler) secretMatches(s string) bool {
	if s == "" || len(s) > maxSecretLen {
		return false
	}
	sum := sha256.Sum256([]byte(s))
	match := 0
	for i := range h.secrets {
		match |= subtle.ConstantTimeCompare(sum[:], h.secrets[i][:])
	}
	return match == 1
}

// bearerToken returns the credentials of an "Authorization: Bearer <credentials>" value, else "".
func bearerToken(v string) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// admit takes a token from the bucket; when there is none it returns the seconds to wait.
func (h *Handler) admit() (int, bool) {
	if h.limiter == nil {
		return 0, true
	}
	now := h.now()
	res := h.limiter.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if !res.OK() || delay > 0 {
		res.CancelAt(now)
		return max(1, int(math.Ceil(delay.Seconds()))), false
	}
	return 0, true
}

// abuseProtectionHandshake answers CloudEvents' webhook validation request (HTTP OPTIONS with
// WebHook-Request-Origin), which Event Grid sends for subscriptions with the CloudEvents schema. The callback
// variant (WebHook-Request-Callback) is not followed: the handler makes no requests to sender-given URLs.
func (h *Handler) abuseProtectionHandshake(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("WebHook-Request-Origin")
	if !validOrigin(origin) {
		w.Header().Set("Allow", allowedMethods)
		h.refuse(w, r, http.StatusBadRequest, resultInvalid, "missing or invalid WebHook-Request-Origin")
		return
	}
	w.Header().Set("Allow", allowedMethods)
	w.Header().Set("WebHook-Allowed-Origin", origin)
	w.Header().Set("WebHook-Allowed-Rate", h.allowedRate)
	deliveriesTotal.WithLabelValues(resultValidation).Inc()
	w.WriteHeader(http.StatusOK)
}

// validOrigin reports whether s is a DNS name (what Event Grid sends, eventgrid.azure.net), so echoing it back
// in a header is safe.
func validOrigin(s string) bool {
	if s == "" || len(s) > maxHostLen {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !isLetter(r) && !isDigit(r) && r != '.' && r != '-' }) < 0
}

// validationHandshake answers Event Grid's subscription validation event with its code. The validationUrl
// (manual handshake) is not followed, as no sender-given URL is.
func (h *Handler) validationHandshake(w http.ResponseWriter, r *http.Request, e event) {
	code, err := validationCode(e.data)
	if e.err != nil || err != nil {
		h.refuse(w, r, http.StatusBadRequest, resultInvalid, "invalid subscription validation event")
		return
	}
	body, _ := json.Marshal(struct {
		ValidationResponse string `json:"validationResponse"`
	}{code})
	deliveriesTotal.WithLabelValues(resultValidation).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// readDelivery reads the body, at most MaxBodyBytes, and decodes its events.
func (h *Handler) readDelivery(w http.ResponseWriter, r *http.Request) ([]event, error) {
	tooLarge := &errBody{http.StatusRequestEntityTooLarge, "body too large"}
	if r.ContentLength > h.opts.MaxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		return nil, err
	}
	return decodeDelivery(r.Header.Get("Content-Type"), body, h.opts.MaxEvents)
}

// process notifies the new certificate events of a delivery and returns the delivery's result.
func (h *Handler) process(events []event) string {
	duplicates := 0
	for _, e := range events {
		if e.err != nil {
			h.ignore(ignoredMalformed, e.err)
			continue
		}
		if !h.recent.add(keyOf(e.source, e.id)) {
			duplicates++
			eventsIgnoredTotal.WithLabelValues(ignoredDuplicate).Inc()
			continue
		}
		if !slices.Contains(certificateEventTypes, e.typ) {
			eventsIgnoredTotal.WithLabelValues(ignoredType).Inc()
			continue
		}
		n, err := notificationFrom(e.typ, e.data)
		if err != nil {
			h.ignore(ignoredMalformed, err)
			continue
		}
		notificationsTotal.WithLabelValues(e.typ).Inc()
		h.opts.Notify(n)
	}
	if duplicates == len(events) {
		return resultDuplicate
	}
	return resultAccepted
}

// ignore counts an ignored event and logs why; the reasons are fixed texts, never sender data.
func (h *Handler) ignore(reason string, err error) {
	eventsIgnoredTotal.WithLabelValues(reason).Inc()
	h.log.V(1).Info("Event Grid event ignored", "reason", reason, "detail", err.Error())
}

// refuse answers a request the handler does not take, counts it and logs why.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, result, msg string) {
	deliveriesTotal.WithLabelValues(result).Inc()
	h.log.V(1).Info("Event Grid request refused", "remote", r.RemoteAddr, "method", bounded(r.Method, 16), "status", status, "reason", msg)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// bounded cuts a sender-controlled string for a log line.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
