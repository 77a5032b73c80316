// Package pki decodes, orders, validates and encodes the certificate material
// that vaultcert copies from Azure Key Vault into Kubernetes TLS Secrets.
//
// Everything here is a pure function of its inputs: no network, no Kubernetes,
// no clock (callers pass one where it matters). Errors are classified by the
// sentinels in errors.go and never carry private key bytes, PEM text or base64
// of the input, because they end up in logs, events and status.
package pki
