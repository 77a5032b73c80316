// Package connection turns a VaultConnection or ClusterVaultConnection into a ready keyvault.Config: it names
// connections (Key), enforces the tenancy rules and the admin's host policy, reads credential Secrets and
// ServiceAccounts (Resolver), exchanges ServiceAccount tokens for workload identity, watches exactly the
// credential objects connections name (CredentialWatcher) and explains Entra ID's refusals (AuthenticationFix).
//
// The reconcilers in package controllers use it; it starts no controller of its own.
package connection
