package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// traefikOptions are what the harness tells Traefik.
type traefikOptions struct {
	// binary is the Traefik executable.
	binary string
	// apiServer is the API server's URL; caPEM its serving CA; token the ServiceAccount token Traefik uses.
	apiServer string
	caPEM     []byte
	token     string
	// throttle is --providers.providersThrottleDuration ("" keeps Traefik's default, 2 s).
	throttle string
	// gateway turns on the Kubernetes Gateway provider, with an entry point of its own.
	gateway bool
	// work is where the CA, the token and the log are written.
	work string
}

// traefik is a running Traefik.
type traefik struct {
	*process
	// websecure is the address of the Ingress's TLS entry point, gateway that of the Gateway's listener (empty
	// without the Gateway provider), ping that of the /ping endpoint.
	websecure, gateway, ping string
	// args are Traefik's flags, shown after a failure.
	args []string
}

// startTraefik runs Traefik with its Kubernetes Ingress provider (and Gateway provider), as a cluster-external
// client of the test API server authenticated by a ServiceAccount token.
func startTraefik(o traefikOptions) (*traefik, error) {
	var websecure, gateway, ping string
	for _, addr := range []*string{&websecure, &gateway, &ping} {
		var err error
		if *addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	caPath, tokenPath := filepath.Join(o.work, "apiserver-ca.crt"), filepath.Join(o.work, "traefik.token")
	if err := os.WriteFile(caPath, o.caPEM, 0o600); err != nil {
		return nil, err
	}
	// The token goes in a file (the flag takes a path or the value) so it is not in the process list.
	if err := os.WriteFile(tokenPath, []byte(o.token), 0o600); err != nil {
		return nil, err
	}
	args := []string{
		// No internet here, and a test has no business phoning home.
		"--global.checkNewVersion=false",
		"--global.sendAnonymousUsage=false",
		// DEBUG says which certificate each handshake got and each configuration Traefik applied; no ANSI colours
		// in a log file.
		"--log.level=DEBUG",
		"--log.noColor=true",
		"--entryPoints.websecure.address=" + websecure,
		// TLS on the entry point, as Traefik's Helm chart configures websecure: the Ingress provider only puts
		// spec.tls Secrets into the certificate store; whether a router terminates TLS comes from the entry point
		// (or a router.tls annotation).
		"--entryPoints.websecure.http.tls=true",
		"--entryPoints.traefik.address=" + ping,
		"--ping=true",
		"--ping.entryPoint=traefik",
		"--providers.kubernetesingress=true",
		"--providers.kubernetesingress.endpoint=" + o.apiServer,
		"--providers.kubernetesingress.token=" + tokenPath,
		"--providers.kubernetesingress.certauthfilepath=" + caPath,
	}
	if o.gateway {
		args = append(args,
			// Ingress routers name no entry point, so they go to the default ones: only websecure, which keeps
			// them off the Gateway's entry point.
			"--entryPoints.websecure.asDefault=true",
			// The Gateway provider binds a listener to the entry point whose address ends in the listener's port.
			"--entryPoints.gateway.address="+gateway,
			"--providers.kubernetesgateway=true",
			"--providers.kubernetesgateway.endpoint="+o.apiServer,
			"--providers.kubernetesgateway.token="+tokenPath,
			"--providers.kubernetesgateway.certauthfilepath="+caPath,
		)
	} else {
		gateway = ""
	}
	if o.throttle != "" {
		args = append(args, "--providers.providersThrottleDuration="+o.throttle)
	}
	// KUBERNETES_SERVICE_HOST/PORT (in-cluster) and KUBECONFIG take precedence over the endpoint flags in
	// Traefik's provider: drop them so it uses exactly the endpoint, token and CA given here.
	p, err := startProcess("traefik", o.binary, args, nil,
		[]string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"}, filepath.Join(o.work, "traefik.log"))
	if err != nil {
		return nil, err
	}
	return &traefik{process: p, websecure: websecure, gateway: gateway, ping: ping, args: args}, nil
}

// waitPing waits until Traefik's /ping answers 200: its entry points are listening (the Kubernetes provider may
// still be syncing its caches).
func (t *traefik) waitPing(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	return poll(ctx, timeout, 100*time.Millisecond, t.alive, func() (bool, string) {
		resp, err := client.Get("http://" + t.ping + "/ping")
		if err != nil {
			return false, "Traefik /ping: " + err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "Traefik /ping: " + resp.Status
	})
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// errTimeout marks a wait that ran out of time, as opposed to one that was interrupted or failed.
var errTimeout = errors.New("timed out")

// poll calls cond every interval until it holds, alive fails, ctx ends or timeout passes; the error then carries
// cond's last explanation.
func poll(ctx context.Context, timeout, interval time.Duration, alive func() error, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return fmt.Errorf("%w (last: %s)", err, why)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %s", errTimeout, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
