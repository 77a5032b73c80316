package fakevault_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func TestConcurrentClients(t *testing.T) {
	s := startServer(t)
	for i := 0; i < 4; i++ {
		seed(t, s, fakevault.CertSpec{Name: fmt.Sprintf("c%d", i), KeyType: "EC"})
	}
	c := newClients(t, s, nil, fastRetry)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			name := fmt.Sprintf("c%d", g%4)
			for i := 0; i < 10; i++ {
				if _, err := c.certs.GetCertificate(ctx(t), name, "", nil); err != nil {
					errs <- err
					return
				}
				if _, err := c.secrets.GetSecret(ctx(t), name, "", nil); err != nil {
					errs <- err
					return
				}
				if g == 0 && i%3 == 0 {
					if _, err := s.Rotate(name); err != nil {
						errs <- err
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.Count(fakevault.OpGetSecret); got != 80 {
		t.Fatalf("GetSecret count %d", got)
	}
}

func TestCountFor(t *testing.T) {
	s, c := startWithEC(t, noRetry, "Mine", "other")
	c.certs.GetCertificate(ctx(t), "mine", "", nil)
	c.certs.GetCertificate(ctx(t), "MINE", "", nil)
	c.certs.GetCertificate(ctx(t), "other", "", nil)
	if got := s.CountFor(fakevault.OpGetCertificate, "Mine"); got != 2 {
		t.Fatalf("CountFor %d", got)
	}
	if got := s.Count(fakevault.OpGetCertificate); got != 3 {
		t.Fatalf("Count %d", got)
	}
	for k := range s.Counts() {
		if strings.Contains(k, "/") {
			t.Fatalf("Counts has per-name key %q", k)
		}
	}
	s.ResetCounts()
	if s.CountFor(fakevault.OpGetCertificate, "mine") != 0 {
		t.Fatal("not reset")
	}
}
