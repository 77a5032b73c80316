package controllers

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/vaultcert/vaultcert/internal/keyvault"
)

// pauseReporter picks which throttled reconcile reports a vault's pause with a Warning event: the first one
// to meet it. A pause that stalls a thousand VaultCertificates makes one event, not one per object per try.
// The zero value is ready to use.
type pauseReporter struct {
	mu sync.Mutex
	// reported is, per vault host, the end of the last pause an event was emitted for (extended as the
	// pause is).
	reported map[string]time.Time
}

// firstSight records that a reconcile met a pause of vault lasting until until, and reports whether the pause
// is new: no pause of this vault was reported, or the last one reported had ended by now. A pause that is
// extended by further 429s while it runs stays the same pause.
func (p *pauseReporter) firstSight(vault string, until, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reported == nil {
		p.reported = map[string]time.Time{}
	}
	// Pauses that have ended are forgotten, so the map holds only the vaults paused now, however many
	// vault hosts tenants name over time.
	for v, end := range p.reported {
		if now.After(end) && v != vault {
			delete(p.reported, v)
		}
	}
	last, seen := p.reported[vault]
	isNew := !seen || !now.Before(last)
	if until.After(last) {
		p.reported[vault] = until
	}
	return isNew
}

// throttle describes a throttled failure: the vault, when its pause ends, and whether the refusal was local
// (the client-side budget; nothing was sent, Key Vault did not throttle).
type throttle struct {
	vault string
	until time.Time
	local bool
}

// throttleOf extracts the throttle from a failure's cause; ok is false when the cause is not a 429 or a pause.
func throttleOf(err error, now time.Time) (throttle, bool) {
	th, ok := keyvault.AsThrottled(err)
	if !ok {
		return throttle{}, false
	}
	t := throttle{vault: th.Vault, until: th.PausedUntil, local: th.Code == keyvault.CodeClientRateLimited}
	if t.vault == "" {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.RawResponse != nil && re.RawResponse.Request != nil {
			t.vault = strings.ToLower(re.RawResponse.Request.URL.Host)
		}
	}
	if t.until.IsZero() {
		t.until = now.Add(th.RequeueAfter(now))
	}
	return t, true
}

// message is a Ready message that stays the same for every try during one pause, so throttling does not
// rewrite the status of every VaultCertificate on every try.
func (t throttle) message() string {
	if t.local {
		return fmt.Sprintf("vaultcert's request budget for Key Vault %s is used up (the connection's spec.rateLimit or --vault-requests-per-second); nothing was sent, retrying shortly", t.vault)
	}
	return fmt.Sprintf("Key Vault %s is throttling requests (429); vaultcert pauses every request to this vault until %s, then retries",
		t.vault, t.until.UTC().Format(time.RFC3339))
}
