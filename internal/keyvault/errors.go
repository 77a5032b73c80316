package keyvault

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ServiceError is what Key Vault (or the identity provider) answered: the HTTP status, the error code and the
// innermost inner error code. Every typed error below embeds it. Messages come from the service and never
// contain key material.
type ServiceError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the error code (x-ms-error-code, else error.code), e.g. "Forbidden".
	Code string
	// InnerCode is the innermost innererror.code, e.g. "ForbiddenByFirewall"; empty when absent.
	InnerCode string
	// Message is the service's message.
	Message string
	// Operation names the call that failed, e.g. "GetCertificate".
	Operation string

	// cause is the SDK error this was classified from (usually an *azcore.ResponseError), for errors.As.
	// It is not part of Error(): the SDK's message dumps the whole response.
	cause error
}

// Unwrap returns the SDK error this was classified from, if any, so callers can still reach
// *azcore.ResponseError with errors.As.
func (e *ServiceError) Unwrap() error { return e.cause }

// service returns e; promoted to every typed error that embeds ServiceError, it reaches the embedded
// answer whatever the error's type.
func (e *ServiceError) service() *ServiceError { return e }

// Error formats the service answer for conditions and events.
func (e *ServiceError) Error() string {
	code := e.Code
	if e.InnerCode != "" {
		code += "/" + e.InnerCode
	}
	msg := fmt.Sprintf("Key Vault %s answered %d %s", e.Operation, e.StatusCode, code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// NotFoundError is a 404: the certificate, version or secret does not exist (or is soft-deleted).
type NotFoundError struct{ ServiceError }

// UnauthorizedError is a 401 that the SDK could not resolve: the token was refused.
type UnauthorizedError struct{ ServiceError }

// ForbiddenError is a 403: the identity lacks a role or access policy, or a firewall or policy blocks it.
// InnerCode tells which (AccessDenied, ForbiddenByRbac, ForbiddenByFirewall, ForbiddenByPolicy).
type ForbiddenError struct{ ServiceError }

// DisabledError is a 403 for a disabled certificate or secret version.
type DisabledError struct{ ServiceError }

// ThrottledError is a 429. RetryAfter is the server's hint, zero when it sent none.
// The Governor also returns it, without sending anything, for calls made while a vault is paused
// (Code "VaultPaused") or when the local token bucket would make the caller wait too long
// (Code "ClientRateLimited"); RetryAfter is then the remaining wait.
type ThrottledError struct {
	ServiceError
	// RetryAfter is how long the server asked us to wait; zero when it gave no hint.
	RetryAfter time.Duration
	// PausedUntil is when the Governor lets requests to this vault through again; zero when unknown
	// (for example when the error came from Classify alone, without a Governor).
	PausedUntil time.Time
	// Vault is the vault host the Governor refused a call to (set on VaultPaused and ClientRateLimited);
	// empty for a 429 classified from a response, whose request URL names the vault.
	Vault string
}

// RequeueAfter is how long a caller should wait before trying again: the longer of the server's hint and
// the Governor's pause, and at least one second so that a missing hint never causes a hot loop.
func (e *ThrottledError) RequeueAfter(now time.Time) time.Duration {
	d := e.RetryAfter
	if p := e.PausedUntil.Sub(now); p > d {
		d = p
	}
	if d < time.Second {
		d = time.Second
	}
	return d
}

// ConflictError is a 409; InnerCode says why (ObjectIsDeletedButRecoverable, ObjectIsBeingDeleted, ...).
type ConflictError struct{ ServiceError }

// AuthenticationError means no token could be obtained for the connection's identity (wrong client secret,
// unknown client, federated credential mismatch, unreachable authority). Err is azidentity's error.
type AuthenticationError struct {
	// Err is the credential's error.
	Err error
	// StatusCode is the token endpoint's HTTP status; zero when no response was received.
	StatusCode int
	// Code is the OAuth error code from the token endpoint, e.g. "invalid_client"; empty when unknown.
	Code string
	// Message is the first line of the token endpoint's error_description, e.g.
	// "AADSTS7000215: Invalid client secret provided."; empty when unknown.
	Message string
	// EntraCodes are Entra ID's numeric error codes (the token response's error_codes, the AADSTS numbers),
	// e.g. 7000215; empty when the answer had none (managed identity endpoints, network failures).
	EntraCodes []int
}

// Error says the identity could not authenticate. It prefers the token endpoint's short answer over
// azidentity's multi-line message, which is unwieldy in a condition.
func (e *AuthenticationError) Error() string {
	const prefix = "could not get a token for the connection's identity: "
	if e.Code != "" || e.Message != "" {
		msg := prefix
		if e.StatusCode != 0 {
			msg += fmt.Sprintf("%d ", e.StatusCode)
		}
		msg += e.Code
		if e.Message != "" {
			if e.Code != "" {
				msg += ": "
			}
			msg += e.Message
		}
		return msg
	}
	if e.Err == nil {
		return prefix + "unknown error"
	}
	// MSAL can quote a whole (hostile) response body in its errors: keep conditions and events bounded.
	msg := e.Err.Error()
	if len(msg) > maxAuthErrorLen {
		msg = strings.ToValidUTF8(msg[:maxAuthErrorLen], "") + "..."
	}
	return prefix + msg
}

// maxAuthErrorLen bounds azidentity's message in AuthenticationError.Error (it is multi-line and carries
// troubleshooting links, so it gets more room than a service message).
const maxAuthErrorLen = 2048

// Unwrap returns the credential's error.
func (e *AuthenticationError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is a Key Vault 404.
func IsNotFound(err error) bool { var e *NotFoundError; return errors.As(err, &e) }

// IsForbidden reports whether err is a Key Vault 403 other than a disabled object.
func IsForbidden(err error) bool { var e *ForbiddenError; return errors.As(err, &e) }

// IsDisabled reports whether err is a 403 for a disabled version.
func IsDisabled(err error) bool { var e *DisabledError; return errors.As(err, &e) }

// IsUnauthorized reports whether err is a refused token (401).
func IsUnauthorized(err error) bool { var e *UnauthorizedError; return errors.As(err, &e) }

// IsAuthentication reports whether err means the identity could not get a token.
func IsAuthentication(err error) bool { var e *AuthenticationError; return errors.As(err, &e) }

// IsConflict reports whether err is a 409.
func IsConflict(err error) bool { var e *ConflictError; return errors.As(err, &e) }

// IsThrottled reports whether err is a 429 or a local pause.
func IsThrottled(err error) bool { _, ok := AsThrottled(err); return ok }

// AsThrottled returns the 429 inside err, if any.
func AsThrottled(err error) (*ThrottledError, bool) {
	var e *ThrottledError
	ok := errors.As(err, &e)
	return e, ok
}

// TooManyCertificatesError is a vault listing that went past the caller's bound.
type TooManyCertificatesError struct {
	// Max is the bound.
	Max int
}

func (e *TooManyCertificatesError) Error() string {
	return fmt.Sprintf("the vault lists more than %d certificates", e.Max)
}
