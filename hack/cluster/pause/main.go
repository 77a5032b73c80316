// Command pause is the pod sandbox process of the local cluster (containerd's CRI sandbox_image): it holds the
// pod's namespaces open, sleeps, reaps the zombies it inherits as PID 1 of a shared process namespace, and exits
// on SIGINT or SIGTERM. It replaces registry.k8s.io/pause, which cannot be pulled here.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("vaultcert pause")
		return
	}
	// PID 1 ignores every signal it does not handle, so SIGTERM needs an explicit handler to stop the sandbox.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has exited; one SIGCHLD may stand for several.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
