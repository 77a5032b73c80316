package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is every timestamp in the image, so the same binary always gives the same image digest.
var epoch = time.Unix(0, 0).UTC()

// file is one entry of the image's only layer.
type file struct {
	name     string // absolute path inside the image
	mode     int64  // permission bits, plus 01000 (sticky) where needed
	uid, gid int
	dir      bool
	data     []byte
}

// hostCABundle is where Debian's ca-certificates keeps the bundle distroless ships at the same path.
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// distrolessFiles are the files of distroless/static's nonroot variant that a static Go binary can notice.
func distrolessFiles() ([]file, error) {
	cas, err := os.ReadFile(hostCABundle)
	if err != nil {
		return nil, fmt.Errorf("CA roots for the image (install Debian's ca-certificates): %w", err)
	}
	return []file{
		{name: "/etc", mode: 0o755, dir: true},
		{name: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n")},
		{name: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\nnetworks: files\n" +
			"protocols: files\nservices: files\n")},
		{name: "/etc/ssl", mode: 0o755, dir: true},
		{name: "/etc/ssl/certs", mode: 0o755, dir: true},
		{name: hostCABundle, mode: 0o644, data: cas},
		{name: "/home", mode: 0o755, dir: true},
		{name: "/home/nonroot", mode: 0o700, uid: 65532, gid: 65532, dir: true},
		{name: "/root", mode: 0o700, dir: true},
		{name: "/tmp", mode: 0o1777, dir: true},
	}, nil
}

// checkStatic refuses a dynamically linked binary: the image has no libc or loader, so it would fail at exec
// with a bare "no such file or directory".
func checkStatic(binary string) error {
	f, err := elf.Open(binary)
	if err != nil {
		return fmt.Errorf("%s: not a Linux executable: %w", binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", binary)
		}
	}
	return nil
}

// build assembles the image: one layer (base files, then the binary) and the spec's config.
func build(s spec, binary []byte) (v1.Image, error) {
	files, err := s.base.files()
	if err != nil {
		return nil, err
	}
	files = append(files, file{name: s.binaryPath, mode: 0o755, data: binary})
	layerTar, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "hack/cluster/image: " + s.binaryPath, Comment: "static binary on " + firstNonEmpty(s.base.ref, "scratch")},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config = configOf(s)
	return mutate.ConfigFile(img, cfg)
}

// configOf is the runtime config of a spec: what `docker inspect` would show under .Config.
func configOf(s spec) v1.Config {
	var labels map[string]string
	if len(s.labels) > 0 {
		labels = s.labels
	}
	return v1.Config{
		User:       s.effectiveUser(),
		WorkingDir: s.effectiveWorkdir(),
		Env:        append([]string(nil), s.base.env...),
		Entrypoint: s.entrypoint,
		Cmd:        s.cmd,
		Labels:     labels,
	}
}

// tarOf writes the files as a tar, parents before children, with fixed owners and times.
func tarOf(files []file) ([]byte, error) {
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if !path.IsAbs(f.name) {
			return nil, errors.New("image path must be absolute: " + f.name)
		}
		h := &tar.Header{
			Name:    f.name[1:],
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
