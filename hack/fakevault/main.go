// Command fakevault runs the fake Key Vault + token authority (internal/fakevault) on its own,
// for the demo, benchmarks and manual poking. It serves the vault, the authority and the JSON
// admin API (/admin/, no authentication) on one TLS listener and prints one JSON line with the
// URLs, then runs until interrupted.
//
//	go run ./hack/fakevault -addr 127.0.0.1:8443 -ca-out /tmp/fakevault-ca.pem -seed-demo \
//	    -client-id demo-client -client-secret demo-secret
//	curl --cacert /tmp/fakevault-ca.pem https://127.0.0.1:8443/admin/counts
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address (host:port; port 0 picks one)")
	caOut := flag.String("ca-out", "", "write the PEM of the TLS CA to this file")
	seedDemo := flag.Bool("seed-demo", false, "seed demo certificates (demo-web: RSA chain depth 3, demo-ec: EC P-256 PEM, demo-self: self-signed)")
	clientID := flag.String("client-id", "", "register a service principal with this client ID")
	clientSecret := flag.String("client-secret", "", "the client secret of -client-id")
	tenant := flag.String("tenant", fakevault.DefaultTenantID, "tenant ID served by the authority")
	hostnames := flag.String("hostnames", "", "comma-separated extra DNS names / IPs for the TLS certificate")
	pending := flag.Duration("pending-duration", 0, "how long created certificates stay inProgress")
	flag.Parse()

	var extra []string
	for _, h := range strings.Split(*hostnames, ",") {
		if h = strings.TrimSpace(h); h != "" {
			extra = append(extra, h)
		}
	}
	s, err := fakevault.Start(fakevault.Options{Addr: *addr, TenantID: *tenant, Hostnames: extra})
	if err != nil {
		log.Fatalf("fakevault: %v", err)
	}
	defer s.Close()
	s.SetPendingDuration(*pending)
	if *caOut != "" {
		if err := os.WriteFile(*caOut, s.CAPEM(), 0o644); err != nil {
			log.Fatalf("fakevault: writing %s: %v", *caOut, err)
		}
	}
	if *clientID != "" {
		if *clientSecret == "" {
			log.Fatal("fakevault: -client-id needs -client-secret")
		}
		s.AddClientSecret(*clientID, *clientSecret)
	}
	var seeded []string
	if *seedDemo {
		for _, spec := range []fakevault.CertSpec{
			{Name: "demo-web", ChainDepth: 3, DNSNames: []string{"demo.example.com", "www.demo.example.com"}},
			{Name: "demo-ec", KeyType: "EC", ContentType: "application/x-pem-file", ChainDepth: 2},
			{Name: "demo-self", Validity: 90 * 24 * time.Hour},
		} {
			v, err := s.Seed(spec)
			if err != nil {
				log.Fatalf("fakevault: seeding %s: %v", spec.Name, err)
			}
			seeded = append(seeded, v.Name+"/"+v.Version)
		}
	}
	info, _ := json.Marshal(map[string]any{
		"vaultURL":      s.URL(),
		"authorityHost": s.AuthorityHost(),
		"tenantId":      s.TenantID(),
		"adminURL":      s.URL() + "admin/",
		"caFile":        *caOut,
		"seeded":        seeded,
	})
	fmt.Println(string(info))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}
