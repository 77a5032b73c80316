// Package decide holds vaultcert's pure decisions: must the Secret be written (NeedsSync), when to ask Key Vault
// again (RefreshInterval, NextCheck, Jitter), when a certificate is due for renewal (RenewalTime,
// RenewalOverdue), what Key Vault policy a spec asks for and whether a change needs a new version
// (IssuancePolicy, PolicyDiff), and how long to wait before retrying a failure (BackoffDelay, RetryDelay). It
// talks to nothing: every input is a value, every clock is a parameter, and its tests run with plain go test.
package decide
