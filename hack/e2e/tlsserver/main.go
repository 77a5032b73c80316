// Command tlsserver is the workload of `make e2e`: an HTTPS server on :8443 serving the certificate and key of a
// mounted kubernetes.io/tls Secret (tls.crt, tls.key in -dir), read once at start as most servers do, so only a
// restart (a rollout) makes it serve a new version. It answers every request with its certificate's thumbprint.
package main

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	dir := flag.String("dir", "/tls", "Directory of the mounted Secret (tls.crt, tls.key).")
	addr := flag.String("addr", ":8443", "Listen address.")
	flag.Parse()
	pair, err := tls.LoadX509KeyPair(filepath.Join(*dir, "tls.crt"), filepath.Join(*dir, "tls.key"))
	if err != nil {
		log.Fatalf("loading the mounted certificate: %v", err)
	}
	sum := sha1.Sum(pair.Certificate[0])
	thumbprint := strings.ToUpper(hex.EncodeToString(sum[:]))
	log.Printf("serving certificate %s on %s", thumbprint, *addr)
	srv := &http.Server{
		Addr:              *addr,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, thumbprint)
		}),
	}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
