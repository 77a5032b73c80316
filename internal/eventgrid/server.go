package eventgrid

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"time"
)

// Server serves a Handler on its own port: HTTPS when CertDir holds tls.crt and tls.key (reloaded from disk for
// every new connection, so a renewed certificate is served without a restart), else plain HTTP for a TLS-terminating
// Ingress or Gateway in front. It is a controller-runtime Runnable that runs on the elected leader only: the
// leader's controller is the one that acts on the notifications, and Event Grid retries a delivery that found no
// listener.
type Server struct {
	// Addr is the listen address, e.g. ":9443".
	Addr string
	// CertDir, when set, holds tls.crt and tls.key.
	CertDir string
	// Handler answers the requests.
	Handler http.Handler
}

// Start listens until ctx ends, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{
		Addr:    s.Addr,
		Handler: s.Handler,
		// Event Grid waits 30 s for an answer; slow or bloated requests are cut well before.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if s.CertDir != "" {
		crt, key := filepath.Join(s.CertDir, "tls.crt"), filepath.Join(s.CertDir, "tls.key")
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(crt, key)
			return &c, err
		}}
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ListenAndServeTLS("", "")
		} else {
			err = srv.ListenAndServe()
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return <-errc
	}
}

// NeedLeaderElection is true: only the leader's controller acts on notifications.
func (s *Server) NeedLeaderElection() bool { return true }
