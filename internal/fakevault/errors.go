package fakevault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Service error codes used in error.code and error.innererror.code.
const (
	CodeUnauthorized                   = "Unauthorized"
	CodeForbidden                      = "Forbidden"
	CodeThrottled                      = "Throttled"
	CodeCertificateNotFound            = "CertificateNotFound"
	CodeSecretNotFound                 = "SecretNotFound"
	CodePendingCertificateNotFound     = "PendingCertificateNotFound"
	CodeConflict                       = "Conflict"
	CodeBadParameter                   = "BadParameter"
	CodeInternalServerError            = "InternalServerError"
	CodeServiceUnavailable             = "ServiceUnavailable"
	InnerSecretDisabled                = "SecretDisabled"
	InnerForbiddenByRbac               = "ForbiddenByRbac"
	InnerForbiddenByFirewall           = "ForbiddenByFirewall"
	InnerForbiddenByPolicy             = "ForbiddenByPolicy"
	InnerAccessDenied                  = "AccessDenied"
	InnerObjectIsDeletedButRecoverable = "ObjectIsDeletedButRecoverable"
	InnerObjectIsBeingDeleted          = "ObjectIsBeingDeleted"
)

// Messages the real service sends (see KEYVAULT.md); where a text was not seen it is marked inferred.
const (
	msgMissingToken   = "AKV10000: Request is missing a Bearer or PoP token."
	msgThrottled      = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
	msgSecretDisabled = "Operation get is not allowed on a disabled secret."
	msgFirewall       = "Client address is not authorized and caller is not a trusted service."
	notFoundHelp      = "If you recently deleted this %s you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)

type wireError struct {
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	InnerError *wireInnerError `json:"innererror,omitempty"`
}

type wireInnerError struct {
	Code       string          `json:"code"`
	InnerError *wireInnerError `json:"innererror,omitempty"`
}

type wireErrorBody struct {
	Error wireError `json:"error"`
}

// vaultError is an error answered by a handler.
type vaultError struct {
	status  int
	code    string
	inner   string
	message string
	header  http.Header
}

// apiError is e as the Server's Go methods return it: the service's message, marked as the fake's.
func (e *vaultError) apiError() error { return errors.New("fakevault: " + e.message) }

func newError(status int, code, inner, format string, args ...any) *vaultError {
	return &vaultError{status: status, code: code, inner: inner, message: fmt.Sprintf(format, args...)}
}

func errCertNotFound(name, version string) *vaultError {
	return errObjectNotFound(CodeCertificateNotFound, "certificate", name, version)
}

func errSecretNotFound(name, version string) *vaultError {
	return errObjectNotFound(CodeSecretNotFound, "secret", name, version)
}

// errObjectNotFound is the service's 404 for a named object ("certificate", "secret") and optional version.
func errObjectNotFound(code, kind, name, version string) *vaultError {
	id := name
	if version != "" {
		id = name + "/" + version
	}
	return newError(http.StatusNotFound, code, "",
		"A %s with (name/id) %s was not found in this key vault. "+notFoundHelp, kind, id, kind)
}

func errMethodNotAllowed(method string) *vaultError {
	return newError(http.StatusMethodNotAllowed, "MethodNotAllowed", "",
		"The requested resource does not support http method '%s'.", method)
}

func errDeletedNotFound(name string) *vaultError {
	return newError(http.StatusNotFound, CodeCertificateNotFound, "", "Deleted Certificate not found: %s", name)
}

func errPendingNotFound(name string) *vaultError {
	// inferred: code and text of the service for a certificate without a pending operation
	return newError(http.StatusNotFound, CodePendingCertificateNotFound, "", "Pending certificate not found: %s", name)
}

func errBadParameter(format string, args ...any) *vaultError {
	return newError(http.StatusBadRequest, CodeBadParameter, "", format, args...)
}

func errDeletedButRecoverable(name string) *vaultError {
	return newError(http.StatusConflict, CodeConflict, InnerObjectIsDeletedButRecoverable,
		"Certificate %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the certificate can only be recovered or purged.", name)
}

func errBeingDeleted(name string) *vaultError {
	return newError(http.StatusConflict, CodeConflict, InnerObjectIsBeingDeleted,
		"Certificate %s is currently being deleted.", name)
}

// defaultCode maps an HTTP status to the service's error.code.
func defaultCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadParameter
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeCertificateNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusTooManyRequests:
		return CodeThrottled
	case http.StatusInternalServerError:
		return CodeInternalServerError
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return CodeServiceUnavailable
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	case http.StatusRequestTimeout:
		return "RequestTimeout"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// defaultMessage returns the service's text for a status/inner code (inferred where not recorded).
func defaultMessage(status int, inner, clientID, tenant string) string {
	caller := fmt.Sprintf("appid=%s;oid=%s;iss=https://sts.windows.net/%s/", clientID, objectID(clientID), tenant)
	switch {
	case status == http.StatusTooManyRequests:
		return msgThrottled
	case status == http.StatusForbidden && inner == InnerForbiddenByFirewall:
		return msgFirewall + "\r\nClient address: 127.0.0.1\r\nCaller: " + caller + "\r\nVault: fakevault;location=fakeregion"
	case status == http.StatusForbidden && inner == InnerAccessDenied:
		return fmt.Sprintf("The user, group or application '%s' does not have certificates get permission on key vault 'fakevault;location=fakeregion'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287", caller)
	case status == http.StatusForbidden && inner == InnerForbiddenByPolicy:
		return "The operation is not allowed by the vault's access policy or an Azure Policy assignment."
	case status == http.StatusForbidden:
		return rbacMessage(caller)
	case status == http.StatusUnauthorized:
		return msgMissingToken
	case status == http.StatusInternalServerError:
		return "An unexpected error occurred while processing the request."
	case status == http.StatusServiceUnavailable:
		return "The service is temporarily unavailable. Please retry later."
	case status == http.StatusNotFound:
		return "The requested resource was not found."
	}
	return http.StatusText(status)
}

func rbacMessage(caller string) string {
	return "Caller is not authorized to perform action on resource.\r\n" +
		"If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n" +
		"Caller: " + caller + "\r\n" +
		"Action: 'Microsoft.KeyVault/vaults/certificates/read'\r\n" +
		"Resource: '/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/fakevault/providers/microsoft.keyvault/vaults/fakevault'\r\n" +
		"Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: fakevault;location=fakeregion\r\n"
}

// writeError writes the service's error body and the x-ms-error-code header.
func writeError(w http.ResponseWriter, e *vaultError) {
	for k, v := range e.header {
		w.Header()[k] = v
	}
	body := wireErrorBody{Error: wireError{Code: e.code, Message: e.message}}
	if e.inner != "" {
		body.Error.InnerError = &wireInnerError{Code: e.inner}
	}
	w.Header().Set("x-ms-error-code", e.code)
	writeJSON(w, e.status, body)
}

// writeJSON writes v as the service does: application/json; charset=utf-8 with a Content-Length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
