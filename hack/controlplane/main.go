// Command controlplane starts a local Kubernetes control plane (kube-apiserver + etcd from envtest), installs
// CRDs, writes an admin kubeconfig and runs until SIGINT or SIGTERM, then stops the control plane and removes the
// kubeconfig. hack/helm-test.sh and the demo use it; so can a person who wants a throwaway API server:
//
//	KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) go run ./hack/controlplane -kubeconfig-out /tmp/kc -crd-dir config/crd/bases
//
// The kubeconfig is written atomically (temporary file + rename) once the API server answers and the CRDs are
// established, so a caller can wait for the file to appear. There is no controller-manager and no scheduler:
// objects are stored and validated, pods never run, and namespaces are never finalized.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func main() {
	var (
		kubeconfigOut string
		crdDirs       string
		assets        string
		user          string
		attach        bool
		startTimeout  time.Duration
	)
	flag.StringVar(&kubeconfigOut, "kubeconfig-out", "", "Write an admin kubeconfig (group system:masters) to this path once the control plane is ready (required).")
	flag.StringVar(&crdDirs, "crd-dir", "", "Comma-separated directories of CRD manifests to install and wait for, e.g. config/crd/bases; empty installs none.")
	flag.StringVar(&assets, "assets-dir", os.Getenv("KUBEBUILDER_ASSETS"), "Directory with kube-apiserver and etcd (default $KUBEBUILDER_ASSETS; hack/envtest-assets.sh prints one).")
	flag.StringVar(&user, "user", "vaultcert-admin", "Name of the admin user in the kubeconfig.")
	flag.BoolVar(&attach, "attach-output", false, "Copy kube-apiserver and etcd output to this process's stdout and stderr.")
	flag.DurationVar(&startTimeout, "start-timeout", time.Minute, "How long kube-apiserver and etcd may take to start.")
	flag.Parse()

	if kubeconfigOut == "" {
		fail("-kubeconfig-out is required")
	}
	if assets == "" {
		fail("no binaries: set -assets-dir or KUBEBUILDER_ASSETS (KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh))")
	}
	var dirs []string
	for _, d := range strings.Split(crdDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			dirs = append(dirs, d)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        dirs,
		ErrorIfCRDPathMissing:    len(dirs) > 0,
		AttachControlPlaneOutput: attach,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Catch signals before starting, so a signal during start still stops what was started.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		fail("cannot start the control plane: %v", err)
	}
	admin, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		stop(env, "")
		fail("cannot create the admin user: %v", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		stop(env, "")
		fail("cannot build the kubeconfig: %v", err)
	}
	if err := writeAtomically(kubeconfigOut, kubeconfig); err != nil {
		stop(env, "")
		fail("cannot write the kubeconfig: %v", err)
	}
	fmt.Printf("control plane ready: server %s, kubeconfig %s, CRDs from %q\n", cfg.Host, kubeconfigOut, dirs)

	sig := <-signals
	fmt.Printf("control plane: %v received, stopping\n", sig)
	stop(env, kubeconfigOut)
}

// stop stops the control plane and removes the kubeconfig, which would point at a dead server.
func stop(env *envtest.Environment, kubeconfig string) {
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "control plane: stop: %v\n", err)
	}
	if kubeconfig != "" {
		_ = os.Remove(kubeconfig)
	}
}

// writeAtomically writes data to a temporary file beside path and renames it, so readers never see a partial file.
func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubeconfig-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "controlplane: "+format+"\n", args...)
	os.Exit(1)
}
