package pki

import (
	"crypto/sha1"
	"fmt"
	"strings"
	"testing"
)

// TestThumbprint checks the SHA-1, upper-case, unseparated form.
func TestThumbprint(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgs {
		leaf := selfSigned(t, alg).cert
		want := strings.ToUpper(fmt.Sprintf("%x", sha1.Sum(leaf.Raw)))
		got := Thumbprint(leaf)
		if got != want || len(got) != 40 || strings.ToUpper(got) != got {
			t.Errorf("%s: Thumbprint = %q, want %q", alg, got, want)
		}
	}
	if Thumbprint(nil) != "" {
		t.Error("Thumbprint(nil) is not empty")
	}
}
