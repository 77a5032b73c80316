// Package eventgrid is the webhook that receives Azure Event Grid deliveries of Key Vault certificate events,
// so the controller learns of a new, near-expiry or expired certificate version without waiting for its next
// poll. Polling stays: a lost or refused event only delays the change until then.
//
// Handler answers:
//
//   - POST of Event Grid schema events (application/json, an array), including the subscription validation
//     event, answered with {"validationResponse": "<code>"};
//   - POST of CloudEvents 1.0 in structured mode, one event (application/cloudevents+json) or a batch
//     (application/cloudevents-batch+json);
//   - OPTIONS, the CloudEvents abuse-protection handshake: WebHook-Allowed-Origin echoes WebHook-Request-Origin
//     and WebHook-Allowed-Rate gives the rate limit in requests per minute.
//
// Microsoft.KeyVault.CertificateNewVersionCreated, CertificateNearExpiry and CertificateExpired events become
// Notifications passed to Options.Notify; every other event is acknowledged and counted. Nothing in an event is
// trusted beyond naming a certificate: names are checked against Key Vault's alphabet and lengths, and the
// controller reads the certificate from the vault itself.
//
// Every request must be authenticated, handshakes included (see Options.HandshakeWithoutAuth): by a shared
// secret in a header or the query string, or by a Microsoft Entra ID token whose signature, expiry, audience,
// issuer and, optionally, caller and role are checked against the tenant's published keys. Unauthenticated
// requests get 401 before their body is read. Bodies, event counts, strings and the rate of requests are
// bounded, and repeated event IDs produce one Notification.
//
// Answers follow Event Grid's retry policy: 200 acknowledges; 429 (rate limit) and 503 (Entra keys
// unavailable) are retried later; 400, 401 and 413 are final, so Event Grid drops or dead-letters the events.
package eventgrid
