package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// maxMessageLen bounds service messages copied into errors (they end up in conditions and events).
const maxMessageLen = 512

// disabledMessage matches Key Vault's 403 text for a disabled object ("Operation get is not allowed on a
// disabled secret."). It is deliberately narrow: "Public network access is disabled" is a firewall 403.
var disabledMessage = regexp.MustCompile(`(?i)\bdisabled (secret|certificate|key)\b|\b(secret|certificate|key) is disabled\b`)

// Classify turns an SDK error into one of this package's typed errors:
//
//   - *azcore.ResponseError: 404 NotFoundError, 401 UnauthorizedError, 403 DisabledError (disabled object)
//     or ForbiddenError, 409 ConflictError, 429 ThrottledError (RetryAfter from Retry-After-Ms,
//     x-ms-retry-after-ms, Retry-After, in azcore's order), any other status *ServiceError;
//   - *azidentity.AuthenticationFailedError and any error a credential built by this package returned:
//     AuthenticationError;
//   - a request refused by Config.AllowedHosts, whether the vault's or the credential's: *HostNotAllowedError
//     (IsHostNotAllowed), never an AuthenticationError;
//   - errors that already carry a typed error (a Governor pause, a second Classify) return that error;
//   - a body over MaxResponseBytes keeps its *ResponseTooLargeError in the chain (IsResponseTooLarge); from
//     a token request it is an AuthenticationError whose Err it is;
//   - anything else (context cancellation, transport errors) is wrapped with the operation name and keeps
//     its chain, so errors.Is(err, context.Canceled) still works.
//
// It returns nil for a nil error.
func Classify(operation string, err error) error {
	return classifyAt(operation, err, time.Now())
}

// classifyAt is Classify with an explicit clock for HTTP-date Retry-After values.
func classifyAt(operation string, err error, now time.Time) error {
	if err == nil {
		return nil
	}
	if typed := typedError(err); typed != nil {
		return typed
	}
	// Credential errors first: a token endpoint failure is never a vault answer.
	if ae := asAuthenticationError(err); ae != nil {
		return ae
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return classifyResponse(operation, re, now)
	}
	return fmt.Errorf("Key Vault %s: %w", operation, err)
}

// typedError returns the first of this package's typed errors in err's chain (dropping wrappers such as
// the pipeline's no-retry marker), or nil.
func typedError(err error) error {
	// Where one typed error wraps another, the first type listed wins, wherever it stands in the chain.
	for _, find := range []func(error) error{
		as[*HostNotAllowedError], as[*NotFoundError], as[*UnauthorizedError], as[*ForbiddenError],
		as[*DisabledError], as[*ThrottledError], as[*ConflictError], as[*AuthenticationError], as[*ServiceError],
	} {
		if typed := find(err); typed != nil {
			return typed
		}
	}
	return nil
}

// as returns the first E in err's chain, or nil.
func as[E error](err error) error {
	var e E
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// classifyResponse maps a Key Vault error response to a typed error.
func classifyResponse(operation string, re *azcore.ResponseError, now time.Time) error {
	se := ServiceError{StatusCode: re.StatusCode, Code: re.ErrorCode, Operation: operation, cause: re}
	var codes []string
	if re.RawResponse != nil {
		var msg string
		codes, msg = parseErrorBody(re.RawResponse)
		se.Message = truncate(msg)
	}
	if se.Code == "" && len(codes) > 0 {
		se.Code = codes[0]
	}
	if len(codes) > 1 {
		se.InnerCode = codes[len(codes)-1]
	}
	switch re.StatusCode {
	case http.StatusNotFound:
		return &NotFoundError{se}
	case http.StatusUnauthorized:
		return &UnauthorizedError{se}
	case http.StatusForbidden:
		if isDisabled(codes, se.Message) {
			return &DisabledError{se}
		}
		return &ForbiddenError{se}
	case http.StatusConflict:
		return &ConflictError{se}
	case http.StatusTooManyRequests:
		var ra time.Duration
		if re.RawResponse != nil {
			ra = retryAfter(re.RawResponse.Header, now)
		}
		return &ThrottledError{ServiceError: se, RetryAfter: ra}
	default:
		return &se
	}
}

// isDisabled recognises a 403 for a disabled certificate, secret or key version, by code (SecretDisabled,
// CertificateDisabled, KeyDisabled) or, when the service sent no such code, by its message.
func isDisabled(codes []string, message string) bool {
	for _, c := range codes {
		if strings.HasSuffix(c, "Disabled") {
			return true
		}
	}
	return disabledMessage.MatchString(message)
}

// kvError is Key Vault's error body; innererror nests.
type kvError struct {
	Code       string   `json:"code"`
	Message    string   `json:"message"`
	InnerError *kvError `json:"innererror"`
}

// parseErrorBody returns the error codes from outermost to innermost, and the outer message.
// It reads only error responses (the SDK has already buffered them); a body that is not Key Vault's
// error JSON yields nothing rather than an excerpt of the body.
func parseErrorBody(resp *http.Response) (codes []string, message string) {
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return nil, ""
	}
	var doc struct {
		Error *kvError `json:"error"`
	}
	if json.Unmarshal(body, &doc) != nil || doc.Error == nil {
		return nil, ""
	}
	message = doc.Error.Message
	// Bounded walk: a hostile body cannot make this loop forever, but it could nest deeply.
	for e, depth := doc.Error, 0; e != nil && depth < 16; e, depth = e.InnerError, depth+1 {
		if e.Code != "" {
			codes = append(codes, e.Code)
		}
	}
	return codes, message
}

// truncate bounds a service message.
func truncate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxMessageLen {
		return s[:maxMessageLen] + "..."
	}
	return s
}

// retryAfter reads the server's hint the way azcore's retry policy does: Retry-After-Ms, then
// x-ms-retry-after-ms (milliseconds), then Retry-After (seconds, or an HTTP date). Zero means no hint.
func retryAfter(h http.Header, now time.Time) time.Duration {
	for _, name := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if v := strings.TrimSpace(h.Get(name)); v != "" {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s > 0 {
			return time.Duration(s) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// tokenError marks an error returned by a credential's GetToken, so Classify can tell a credential
// failure from a vault answer even when azidentity does not use AuthenticationFailedError (unavailable
// credentials, a refused tenant, an assertion callback failure). NonRetriable stops azcore's retry policy.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// NonRetriable tells azcore's retry policy not to retry: the credential has already retried.
func (e *tokenError) NonRetriable() {}

// asAuthenticationError returns an AuthenticationError when err came from a credential; nil otherwise.
func asAuthenticationError(err error) *AuthenticationError {
	var te *tokenError
	var afe *azidentity.AuthenticationFailedError
	isToken := errors.As(err, &te)
	isAFE := errors.As(err, &afe)
	if !isToken && !isAFE {
		return nil
	}
	inner := err
	if isToken {
		inner = te.err
	}
	ae := &AuthenticationError{Err: inner}
	if isAFE && afe.RawResponse != nil {
		ae.StatusCode = afe.RawResponse.StatusCode
		ae.Code, ae.Message, ae.EntraCodes = parseOAuthError(afe.RawResponse)
	}
	return ae
}

// parseOAuthError reads an Entra ID token error body: {"error":"invalid_client","error_description":"AADSTS...\r\nTrace ID: ..."}
// (IMDS answers in that shape too), or a managed identity endpoint's {"statusCode":400,"message":"Unable to load
// the proper Managed Identity."} (App Service, Azure Functions), whose message is returned with an empty code.
func parseOAuthError(resp *http.Response) (code, message string, entraCodes []int) {
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return "", "", nil
	}
	var doc struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorCodes       []int  `json:"error_codes"`
		Message          string `json:"message"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return "", "", nil
	}
	// A hostile authority could send millions of codes: a few are all anyone reads.
	entraCodes = doc.ErrorCodes[:min(len(doc.ErrorCodes), 8)]
	desc := doc.ErrorDescription
	if doc.Error == "" && desc == "" {
		desc = doc.Message
	}
	if i := strings.IndexAny(desc, "\r\n"); i >= 0 {
		desc = desc[:i]
	}
	return doc.Error, truncate(desc), entraCodes
}
