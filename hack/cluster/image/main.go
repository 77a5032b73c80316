// Command image writes an image tarball (docker save format) holding one static binary, without a Docker
// engine or a registry, for `ctr -n k8s.io images import` on the local cluster (hack/cluster).
//
//	go run ./image -kind vaultcert -binary ../../bin/cluster/vaultcert -tag vaultcert:dev -o vaultcert.tar
//
// Kinds: vaultcert (the same user, entrypoint, labels and working directory as /Dockerfile's final stage),
// pause (the pod sandbox), fakevault (the fake Key Vault).
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	kind := flag.String("kind", "", "image to build: "+strings.Join(kinds(), ", "))
	binary := flag.String("binary", "", "static Linux binary to put in the image")
	tag := flag.String("tag", "", "image reference written into the tarball, e.g. vaultcert:dev")
	out := flag.String("o", "", "tarball to write")
	flag.Parse()
	if err := run(*kind, *binary, *tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(kind, binary, tag, out string) error {
	s, ok := specs[kind]
	if !ok {
		return fmt.Errorf("-kind must be one of %s", strings.Join(kinds(), ", "))
	}
	if binary == "" || tag == "" || out == "" {
		return fmt.Errorf("-binary, -tag and -o are required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if err := checkStatic(binary); err != nil {
		return err
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	img, err := build(s, data)
	if err != nil {
		return err
	}
	// Write next to the target and rename, so an interrupted run never leaves a truncated tarball behind.
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

func kinds() []string {
	var ks []string
	for k := range specs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
