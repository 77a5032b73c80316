// Package fakevault is a Key Vault-compatible HTTPS server plus an Entra-ID-like token
// authority, with real crypto and fault injection. Tests, the demo and the benchmarks talk to it
// through the real Azure SDK (azcertificates / azsecrets clients with azidentity credentials), so
// it follows the wire facts in shared/KEYVAULT.md and the recordings in
// shared/fixtures/keyvault-recordings (copied to testdata/ for the fidelity test).
//
// # Starting
//
//	s, err := fakevault.Start(fakevault.Options{})  // one TLS listener on 127.0.0.1:0
//	defer s.Close()
//	s.AddClientSecret("my-client", "my-secret")
//	v, err := s.Seed(fakevault.CertSpec{Name: "web", ChainDepth: 3})
//
// Clients trust s.CAPEM() (or use s.HTTPClient() as the azcore Transport) and point the
// credential at the fake authority:
//
//	transport := s.HTTPClient()
//	cred, _ := azidentity.NewClientSecretCredential(s.TenantID(), "my-client", "my-secret",
//		&azidentity.ClientSecretCredentialOptions{
//			ClientOptions: azcore.ClientOptions{Cloud: cloud.Configuration{
//				ActiveDirectoryAuthorityHost: s.AuthorityHost()}, Transport: transport},
//			DisableInstanceDiscovery: true})
//	certs, _ := azcertificates.NewClient(s.URL(), cred, &azcertificates.ClientOptions{
//		ClientOptions: azcore.ClientOptions{Transport: transport},
//		DisableChallengeResourceVerification: true})
//
// # The vault
//
// Every vault request without Authorization gets the 401 challenge (WWW-Authenticate naming
// login.microsoftonline.com/{tenant} and resource https://vault.azure.net) before its body is
// read; tokens are ES256 JWTs issued by the fake authority and checked (signature, expiry on the
// real clock, tenant, audience). Any api-version is accepted. Served: get certificate (latest
// with or without trailing slash, or a version), versions and list (maxresults capped at 25,
// absolute nextLink with $skiptoken, includePending), update, delete/deleted/recover/purge,
// policy get/update, create with pending operation get/update/delete and merge, import, issuers,
// and GET /secrets/{n}/{v} (PFX with empty password — 3DES, SHA-1 MAC, 2000 iterations — or PEM
// with PKCS#8 key first; outContentType PFX->PEM). Names are case-insensitive. Times are Unix
// seconds, ids are https://{request host}/..., x5t is unpadded base64url SHA-1, versions are 32
// hex characters and the versions list is ordered by version id, like the service.
//
// Behaviour that was inferred rather than recorded is marked "inferred" in the code; the main
// ones: the 409 text for parallel creates, GET of a certificate whose first version is still
// pending (200, enabled=false, no cer/x5t), EC key_size/key_usage defaults, invalid-token 401
// texts, and that PEM->PEM outContentType is rejected like any non-PFX conversion.
//
// # Seeding and mutation
//
// Seed, Rotate, Latest, Versions, SetEnabled, CorruptKey, StripKey, Delete, Recover, Purge work
// without HTTP. Seeded certificates get a completed operation (so bundles carry pending{id} like
// created ones), issuer Self (depth 1) or Unknown (chains), and EmailContacts at 80 % unless
// CertSpec.AutoRenewPercentage/AutoRenewDaysBeforeExpiry ask for AutoRenew.
//
// # Faults, limit mode, counts
//
// InjectFault adds HTTP errors (429 with or without Retry-After, 403 with an inner code, 5xx),
// latency, connection resets, hangs, malformed JSON and truncated secret values; SetLimit turns on
// the service's sliding-window throttling. Count/Counts report requests per operation (see the Op
// constants). The same controls are on the JSON admin API under /admin/ (see AdminHandler), which
// hack/fakevault exposes when run on its own.
//
// # Issuance
//
// POST /certificates/{n}/create answers 202 inProgress with Retry-After 10 and a Location; after
// SetPendingDuration (default 0, on the Now clock) the operation completes: issuer Self is
// self-signed per the policy, issuers registered with AddIssuer (or PUT /certificates/issuers/{n})
// give root->intermediate->leaf chains, Unknown stays inProgress with a CSR until
// POST .../pending/merge. FailNextOperation makes an operation fail. AutoRenew lifetime actions
// are applied by AdvanceRenewals and, on the Now clock, when requests arrive.
package fakevault
