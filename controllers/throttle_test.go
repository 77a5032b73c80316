package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vaultcert/vaultcert/internal/keyvault"
)

func TestPauseReporterOneEventPerPause(t *testing.T) {
	var p pauseReporter
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	until := now.Add(5 * time.Second)
	if !p.firstSight("a.vault.azure.net", until, now) {
		t.Fatal("the first certificate to meet a pause must report it")
	}
	for i := range 100 {
		if p.firstSight("a.vault.azure.net", until, now.Add(time.Duration(i)*10*time.Millisecond)) {
			t.Fatalf("try %d during the same pause reported it again", i)
		}
	}
	// Another vault's pause is its own.
	if !p.firstSight("b.vault.azure.net", until, now) {
		t.Fatal("a pause of another vault must be reported")
	}
	// A pause extended while it runs is the same pause.
	if p.firstSight("a.vault.azure.net", until.Add(5*time.Second), now.Add(4*time.Second)) {
		t.Fatal("an extension of a running pause was reported as a new pause")
	}
	if p.firstSight("a.vault.azure.net", until.Add(5*time.Second), now.Add(9*time.Second)) {
		t.Fatal("a try within the extended pause was reported")
	}
	// Once the pause is over, the next one is new.
	later := until.Add(6 * time.Second)
	if !p.firstSight("a.vault.azure.net", later.Add(time.Second), later) {
		t.Fatal("a new pause after the last one ended must be reported")
	}
}

func TestThrottleMessageIsStableDuringAPause(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	until := now.Add(7 * time.Second)
	paused := func(at time.Time) error {
		return fmt.Errorf("wrapped: %w", &keyvault.ThrottledError{
			ServiceError: keyvault.ServiceError{StatusCode: 429, Code: keyvault.CodeVaultPaused, Operation: "GetSecret",
				Message: fmt.Sprintf("paused for %s", until.Sub(at))},
			RetryAfter: until.Sub(at), PausedUntil: until, Vault: "a.vault.azure.net",
		})
	}
	first, ok := throttleOf(paused(now), now)
	if !ok || first.vault != "a.vault.azure.net" || !first.until.Equal(until) || first.local {
		t.Fatalf("throttleOf = %+v, %v", first, ok)
	}
	second, _ := throttleOf(paused(now.Add(3*time.Second)), now.Add(3*time.Second))
	if first.message() != second.message() {
		t.Fatalf("the message changed between tries of one pause:\n%s\n%s", first.message(), second.message())
	}
	if !strings.Contains(first.message(), "a.vault.azure.net") || !strings.Contains(first.message(), "429") {
		t.Errorf("the message should name the vault and the 429: %s", first.message())
	}

	local, _ := throttleOf(&keyvault.ThrottledError{ServiceError: keyvault.ServiceError{Code: keyvault.CodeClientRateLimited},
		RetryAfter: time.Second, Vault: "a.vault.azure.net"}, now)
	if !local.local || !local.until.Equal(now.Add(time.Second)) {
		t.Fatalf("local throttle = %+v", local)
	}
	if _, ok := throttleOf(errors.New("boom"), now); ok {
		t.Fatal("a plain error is not a throttle")
	}
}
