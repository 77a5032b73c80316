package main

// The images this builder knows. Each is one static binary on a small fixed filesystem; nothing here runs a
// shell, a package manager or a Docker engine.

// distrolessStaticNonroot is what the vaultcert Dockerfile's final stage starts FROM. The builder reproduces the
// parts of that base a static Go binary relies on (its user and group files, home and /tmp, CA roots,
// nsswitch.conf, its environment, user and working directory); tzdata, netbase and os-release are left out.
// The Dockerfile test fails if the Dockerfile moves to another base, so this emulation is revisited then.
var distrolessStaticNonroot = base{
	ref:     "gcr.io/distroless/static-debian12:nonroot",
	user:    "65532",
	workdir: "/home/nonroot",
	env: []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
	},
	files: distrolessFiles,
}

// base is the part of an image that comes before the binary.
type base struct {
	ref     string // the image the Dockerfile names, for the agreement test
	user    string
	workdir string
	env     []string
	files   func() ([]file, error)
}

// spec is one image: a base, the binary's path inside it, and the config the final Dockerfile stage sets.
type spec struct {
	base       base
	binaryPath string   // where the static binary goes, e.g. /vaultcert
	user       string   // overrides base.user when set (Dockerfile USER)
	entrypoint []string // Dockerfile ENTRYPOINT (exec form)
	cmd        []string // Dockerfile CMD (exec form)
	workdir    string   // overrides base.workdir when set (Dockerfile WORKDIR)
	labels     map[string]string
}

// specs maps the -kind flag to its image.
var specs = map[string]spec{
	// vaultcert mirrors the final stage of /Dockerfile; TestVaultcertSpecAgreesWithDockerfile keeps them in step.
	"vaultcert": {
		base:       distrolessStaticNonroot,
		binaryPath: "/vaultcert",
		user:       "65532:65532",
		entrypoint: []string{"/vaultcert"},
		labels: map[string]string{
			"org.opencontainers.image.title":       "vaultcert",
			"org.opencontainers.image.description": "Keeps Azure Key Vault certificates in Kubernetes TLS Secrets",
			"org.opencontainers.image.source":      "https://github.com/vaultcert/vaultcert",
		},
	},
	// tlsserver is the HTTPS workload of `make e2e` (hack/e2e/tlsserver): it serves a mounted TLS Secret.
	"tlsserver": {
		base:       distrolessStaticNonroot,
		binaryPath: "/tlsserver",
		user:       "65532:65532",
		entrypoint: []string{"/tlsserver"},
	},
	// pause is the pod sandbox image set as containerd's CRI sandbox_image. 65535 is the user Kubernetes' own
	// pause image runs as; it needs no files besides itself.
	"pause": {
		base:       base{user: "65535:65535", workdir: "/", files: noFiles},
		binaryPath: "/pause",
		entrypoint: []string{"/pause"},
	},
	// fakevault is the fake Key Vault (hack/fakevault) for in-cluster tests. Its default listen address is
	// 127.0.0.1, unreachable from outside the pod, so the image listens on every address.
	"fakevault": {
		base:       distrolessStaticNonroot,
		binaryPath: "/fakevault",
		user:       "65532:65532",
		entrypoint: []string{"/fakevault"},
		cmd:        []string{"-addr", ":8443"},
	},
}

func noFiles() ([]file, error) { return nil, nil }

// effectiveUser and effectiveWorkdir are what the runtime sees: the spec's value, else the base's.
func (s spec) effectiveUser() string    { return firstNonEmpty(s.user, s.base.user) }
func (s spec) effectiveWorkdir() string { return firstNonEmpty(s.workdir, s.base.workdir) }

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
