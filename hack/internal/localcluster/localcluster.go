// Package localcluster starts a throwaway control plane for the demo and the benchmark: envtest's kube-apiserver
// and etcd (from KUBEBUILDER_ASSETS), vaultcert's CRDs, an admin kubeconfig on disk for the vaultcert binary and
// kubectl, and a client for the caller.
package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
)

// Cluster is a running control plane.
type Cluster struct {
	// Config reaches the API server as an admin.
	Config *rest.Config
	// KubeconfigPath is an admin kubeconfig (group system:masters) for processes and kubectl.
	KubeconfigPath string
	// Client is a direct (uncached) client with the built-in and vaultcert kinds.
	Client client.Client
	env    *envtest.Environment
}

// Start runs the control plane from the repository root (the CRDs are read from config/crd/bases) and writes the
// kubeconfig into workDir. clientQPS and clientBurst size the caller's client (0 keeps client-go's defaults).
func Start(workDir, user string, clientQPS float32, clientBurst int) (*Cluster, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run this through make, which provides kube-apiserver and etcd (hack/envtest-assets.sh)")
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	c := &Cluster{Config: cfg, env: env}
	if err := c.finish(workDir, user, clientQPS, clientBurst); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) finish(workDir, user string, clientQPS float32, clientBurst int) error {
	admin, err := c.env.ControlPlane.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	c.KubeconfigPath = filepath.Join(workDir, "kubeconfig")
	if err := os.WriteFile(c.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := vaultcertv1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg := rest.CopyConfig(c.Config)
	if clientQPS > 0 {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	c.Client, err = client.New(cfg, client.Options{Scheme: scheme})
	return err
}

// Kubectl is the kubectl binary next to the control plane's.
func Kubectl() string { return filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl") }

// Stop stops the API server and etcd.
func (c *Cluster) Stop() error { return c.env.Stop() }
