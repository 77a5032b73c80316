package eventgrid

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
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
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: (&certReloader{dir: s.CertDir}).get}
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

// certReloader serves the key pair of dir, read again at most every certReload: a renewed certificate (a mounted
// Secret, perhaps one vaultcert keeps) is served without a restart, and handshakes, which anyone can start, do not
// read and parse the key each time.
type certReloader struct {
	dir    string
	mu     sync.Mutex
	cert   *tls.Certificate
	readAt time.Time
}

const certReload = 10 * time.Second

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Since(c.readAt) < certReload {
		return c.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(c.dir, "tls.crt"), filepath.Join(c.dir, "tls.key"))
	if err != nil {
		if c.cert != nil {
			c.readAt = time.Now() // keep serving the last good pair while a Secret update is half written
			return c.cert, nil
		}
		return nil, err
	}
	c.cert, c.readAt = &pair, time.Now()
	return c.cert, nil
}

// NeedLeaderElection is true: only the leader's controller acts on notifications.
func (s *Server) NeedLeaderElection() bool { return true }
