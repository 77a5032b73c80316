package main

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path"
	"reflect"
	"strings"
	"testing"
)

// dockerfilePath is the repository's Dockerfile, relative to this package.
const dockerfilePath = "../../../Dockerfile"

// TestVaultcertSpecAgreesWithDockerfile is the check that the image this builder makes for the local cluster is
// the image /Dockerfile describes: same base, binary path, user, entrypoint, command, working directory, labels
// and environment. Change one definition without the other and this fails.
func TestVaultcertSpecAgreesWithDockerfile(t *testing.T) {
	stage, err := parseFinalStage(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	s := specs["vaultcert"]
	if stage.from != s.base.ref {
		t.Fatalf("the Dockerfile's final stage is FROM %q but the builder emulates %q: update distrolessStaticNonroot in spec.go", stage.from, s.base.ref)
	}
	if !stage.copies[s.binaryPath] {
		t.Errorf("the Dockerfile copies the binary to %v, the builder to %q", keys(stage.copies), s.binaryPath)
	}

	img, err := build(s, []byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Config
	want := stage.config(s.base)
	if got.User != want.user {
		t.Errorf("user: image %q, Dockerfile %q", got.User, want.user)
	}
	if !equalList(got.Entrypoint, want.entrypoint) {
		t.Errorf("entrypoint: image %q, Dockerfile %q", got.Entrypoint, want.entrypoint)
	}
	if !equalList(got.Cmd, want.cmd) {
		t.Errorf("cmd: image %q, Dockerfile %q", got.Cmd, want.cmd)
	}
	if got.WorkingDir != want.workdir {
		t.Errorf("working directory: image %q, Dockerfile %q", got.WorkingDir, want.workdir)
	}
	if !maps.Equal(got.Labels, want.labels) {
		t.Errorf("labels: image %v, Dockerfile %v", got.Labels, want.labels)
	}
	if !equalList(got.Env, want.env) {
		t.Errorf("env: image %q, Dockerfile %q", got.Env, want.env)
	}
	if cfg.OS != "linux" {
		t.Errorf("os %q", cfg.OS)
	}
}

// TestVaultcertImageRunsAsNonRootWithoutShell checks the properties the restricted Pod Security level and the
// distroless base stand for: a numeric non-root user (kubelet can verify runAsNonRoot only for a numeric one),
// no shell, and the binary executable and owned by root.
func TestVaultcertImageRunsAsNonRootWithoutShell(t *testing.T) {
	img, err := build(specs["vaultcert"], []byte("binary"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, _, _ := strings.Cut(cfg.Config.User, ":")
	if uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("user %q is not a numeric non-root uid", cfg.Config.User)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries["/"+strings.TrimSuffix(h.Name, "/")] = h
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/busybox/sh", "/bin"} {
		if entries[shell] != nil {
			t.Errorf("image has %s", shell)
		}
	}
	bin := entries["/vaultcert"]
	if bin == nil || bin.Mode&0o111 == 0 || bin.Uid != 0 {
		t.Errorf("/vaultcert missing, not executable or not owned by root: %+v", bin)
	}
	if home := entries["/home/nonroot"]; home == nil || home.Uid != 65532 {
		t.Errorf("/home/nonroot missing or not owned by 65532: %+v", home)
	}
	if tmp := entries["/tmp"]; tmp == nil || tmp.Mode != 0o1777 {
		t.Errorf("/tmp missing or not 1777: %+v", tmp)
	}
}

// stage is what the final stage of a Dockerfile sets, as written (inherited values are applied in config).
type stage struct {
	from       string
	user       string
	workdir    string
	entrypoint []string
	cmd        []string
	hasCmd     bool
	labels     map[string]string
	env        []string        // KEY=value in order of appearance
	copies     map[string]bool // COPY/ADD destinations
}

// want is the runtime config the stage gives on top of its base.
type want struct {
	user, workdir   string
	entrypoint, cmd []string
	labels          map[string]string
	env             []string
}

func (s stage) config(b base) want {
	w := want{user: firstNonEmpty(s.user, b.user), workdir: b.workdir, entrypoint: s.entrypoint, cmd: s.cmd, labels: s.labels}
	if s.workdir != "" {
		w.workdir = s.workdir
		if !path.IsAbs(s.workdir) { // a relative WORKDIR is relative to the inherited one
			w.workdir = path.Join(b.workdir, s.workdir)
		}
	}
	w.env = append([]string(nil), b.env...)
	for _, kv := range s.env {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, old := range w.env {
			if strings.HasPrefix(old, k+"=") {
				w.env[i], replaced = kv, true
			}
		}
		if !replaced {
			w.env = append(w.env, kv)
		}
	}
	return w
}

// parseFinalStage reads the instructions of a Dockerfile's last FROM stage. It knows the instructions that
// shape an image's config; RUN, ARG and the like are skipped.
func parseFinalStage(file string) (stage, error) {
	lines, err := logicalLines(file)
	if err != nil {
		return stage{}, err
	}
	var st stage
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			fields := strings.Fields(rest)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") { // --platform=...
				fields = fields[1:]
			}
			if len(fields) == 0 {
				return stage{}, errors.New("FROM without an image")
			}
			st = stage{from: fields[0], labels: map[string]string{}, copies: map[string]bool{}}
		case "USER":
			st.user = rest
		case "WORKDIR":
			st.workdir = rest
		case "ENTRYPOINT":
			if st.entrypoint, err = execForm("ENTRYPOINT", rest); err != nil {
				return stage{}, err
			}
			if !st.hasCmd { // an ENTRYPOINT resets a CMD inherited from the base, not one set in this stage
				st.cmd = nil
			}
		case "CMD":
			if st.cmd, err = execForm("CMD", rest); err != nil {
				return stage{}, err
			}
			st.hasCmd = true
		case "LABEL":
			pairs, err := keyValues(rest)
			if err != nil {
				return stage{}, err
			}
			for _, kv := range pairs {
				st.labels[kv[0]] = kv[1]
			}
		case "ENV":
			pairs, err := keyValues(rest)
			if err != nil {
				return stage{}, err
			}
			for _, kv := range pairs {
				st.env = append(st.env, kv[0]+"="+kv[1])
			}
		case "COPY", "ADD":
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				st.copies[fields[len(fields)-1]] = true
			}
		}
	}
	if st.from == "" {
		return stage{}, errors.New(file + ": no FROM")
	}
	return st, nil
}

// logicalLines joins backslash continuations and drops comments and blank lines.
func logicalLines(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	return lines, sc.Err()
}

// execForm parses the JSON form of ENTRYPOINT and CMD. The shell form needs /bin/sh, which the image does not
// have, so it is an error here.
func execForm(instr, rest string) ([]string, error) {
	var args []string
	if err := json.Unmarshal([]byte(rest), &args); err != nil {
		return nil, errors.New(instr + " is not in exec (JSON) form, which needs a shell: " + rest)
	}
	return args, nil
}

// keyValues parses `k=v k2="v 2"` (and the legacy single `k v` form) of LABEL and ENV.
func keyValues(rest string) ([][2]string, error) {
	if k, v, ok := strings.Cut(rest, " "); ok && !strings.Contains(k, "=") {
		return [][2]string{{k, unquote(strings.TrimSpace(v))}}, nil
	}
	var out [][2]string
	for _, word := range splitWords(rest) {
		k, v, ok := strings.Cut(word, "=")
		if !ok {
			return nil, errors.New("want key=value, got " + word)
		}
		out = append(out, [2]string{unquote(k), unquote(v)})
	}
	return out, nil
}

// splitWords splits on spaces outside double quotes.
func splitWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			cur.WriteRune(r)
			escaped = true
		case r == '"':
			cur.WriteRune(r)
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		return strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s)
	}
	return s
}

func equalList(a, b []string) bool { return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b) }

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestParseFinalStage pins the parser on a Dockerfile with everything it handles.
func TestParseFinalStage(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/Dockerfile"
	os.WriteFile(file, []byte(`# syntax=docker/dockerfile:1
FROM golang AS build
USER 0
LABEL stage=build
FROM --platform=linux/amd64 example.com/base:1
LABEL org.opencontainers.image.title="vault cert" \
      a=b
LABEL legacy value with spaces
ENV X=1 Y="two words"
WORKDIR app
COPY --from=build /out /bin/tool
USER 10:20
CMD ["--x"]
ENTRYPOINT ["/bin/tool", "run"]
`), 0o644)
	st, err := parseFinalStage(file)
	if err != nil {
		t.Fatal(err)
	}
	w := st.config(base{user: "1", workdir: "/home", env: []string{"X=0", "P=/bin"}})
	if st.from != "example.com/base:1" || w.user != "10:20" || w.workdir != "/home/app" ||
		!reflect.DeepEqual(w.entrypoint, []string{"/bin/tool", "run"}) || !reflect.DeepEqual(w.cmd, []string{"--x"}) ||
		!reflect.DeepEqual(w.labels, map[string]string{"org.opencontainers.image.title": "vault cert", "a": "b", "legacy": "value with spaces"}) ||
		!reflect.DeepEqual(w.env, []string{"X=1", "P=/bin", "Y=two words"}) || !st.copies["/bin/tool"] {
		t.Errorf("parsed %+v, config %+v", st, w)
	}
	os.WriteFile(file, []byte("FROM scratch\nENTRYPOINT /bin/tool run\n"), 0o644)
	if _, err := parseFinalStage(file); err == nil {
		t.Error("shell-form ENTRYPOINT accepted")
	}
}
