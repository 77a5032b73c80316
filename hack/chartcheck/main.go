// Command chartcheck holds the checks of hack/helm-test.sh that are awkward in shell: it reads rendered
// manifests (helm template, kubectl kustomize) and RBAC files without any tool beyond Go.
//
//	chartcheck rules FILE [-kind ClusterRole] [-name NAME]
//	    prints every permission granted by the Roles and ClusterRoles in FILE, one "group resource verb" line
//	    each ("core" for the "" group, resource with its subresource, e.g. "vaultcert.io vaultcertificates/status
//	    patch"), sorted and unique.
//	chartcheck compare -want config/rbac/role.yaml -got rendered.yaml -name vaultcert-manager
//	    fails unless the ClusterRole NAME in -got grants exactly the permissions of the ClusterRole in -want.
//	chartcheck pod -in rendered.yaml [-name NAME]
//	    prints a Pod (JSON) made from the pod template of the Deployment NAME (or the only Deployment), so that
//	    Pod Security admission can be asked to judge it with a server-side dry run.
//	chartcheck promrules -in rendered.yaml
//	    prints the spec of the only PrometheusRule as JSON ({"groups": [...]}, a Prometheus rule file), for
//	    hack/promcheck.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "rules":
		err = cmdRules(os.Args[2:])
	case "compare":
		err = cmdCompare(os.Args[2:])
	case "pod":
		err = cmdPod(os.Args[2:])
	case "promrules":
		err = cmdPromRules(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chartcheck %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: chartcheck rules FILE [-kind K] [-name N] | compare -want FILE -got FILE -name N | pod -in FILE [-name N] | promrules -in FILE")
	os.Exit(2)
}

// document is one manifest of a multi-document YAML file.
type document struct {
	Kind     string            `json:"kind"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	raw      []byte
}

// readDocuments splits a YAML or JSON stream into its objects, skipping empty documents and expanding Lists.
func readDocuments(path string) ([]document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var docs []document
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		var d document
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if strings.HasSuffix(d.Kind, "List") {
			var list struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, err
			}
			for _, item := range list.Items {
				var id document
				if err := json.Unmarshal(item, &id); err != nil {
					return nil, err
				}
				id.raw = item
				docs = append(docs, id)
			}
			continue
		}
		d.raw = raw
		docs = append(docs, d)
	}
}

// permissions expands the rules of the matching Roles and ClusterRoles into "group resource verb" strings.
func permissions(docs []document, kind, name string) (map[string]bool, int, error) {
	perms := map[string]bool{}
	matched := 0
	for _, d := range docs {
		if d.Kind != "ClusterRole" && d.Kind != "Role" {
			continue
		}
		if (kind != "" && d.Kind != kind) || (name != "" && d.Metadata.Name != name) {
			continue
		}
		matched++
		var role struct {
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if err := json.Unmarshal(d.raw, &role); err != nil {
			return nil, 0, err
		}
		for _, r := range role.Rules {
			if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
				return nil, 0, fmt.Errorf("%s %s: nonResourceURLs and resourceNames are not supported by this check", d.Kind, d.Metadata.Name)
			}
			for _, g := range r.APIGroups {
				if g == "" {
					g = "core"
				}
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						perms[g+" "+res+" "+v] = true
					}
				}
			}
		}
	}
	return perms, matched, nil
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func cmdRules(args []string) error {
	if len(args) < 1 {
		usage()
	}
	fs := flag.NewFlagSet("rules", flag.ExitOnError)
	kind := fs.String("kind", "", "only Roles or ClusterRoles")
	name := fs.String("name", "", "only the role of this name")
	_ = fs.Parse(args[1:])
	docs, err := readDocuments(args[0])
	if err != nil {
		return err
	}
	perms, matched, err := permissions(docs, *kind, *name)
	if err != nil {
		return err
	}
	if matched == 0 {
		return fmt.Errorf("%s holds no matching Role or ClusterRole", args[0])
	}
	for _, p := range sorted(perms) {
		fmt.Println(p)
	}
	return nil
}

func cmdCompare(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	wantFile := fs.String("want", "", "file with the reference ClusterRole")
	gotFile := fs.String("got", "", "rendered manifests")
	name := fs.String("name", "", "name of the ClusterRole in -got")
	_ = fs.Parse(args)
	wantDocs, err := readDocuments(*wantFile)
	if err != nil {
		return err
	}
	gotDocs, err := readDocuments(*gotFile)
	if err != nil {
		return err
	}
	want, n, err := permissions(wantDocs, "ClusterRole", "")
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%s holds %d ClusterRoles, want 1", *wantFile, n)
	}
	got, n, err := permissions(gotDocs, "ClusterRole", *name)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("%s holds %d ClusterRoles named %q, want 1", *gotFile, n, *name)
	}
	var missing, extra []string
	for _, p := range sorted(want) {
		if !got[p] {
			missing = append(missing, p)
		}
	}
	for _, p := range sorted(got) {
		if !want[p] {
			extra = append(extra, p)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "ClusterRole %s differs from %s (update charts/vaultcert/templates/rbac.yaml):", *name, *wantFile)
		for _, p := range missing {
			fmt.Fprintf(&b, "\n  missing: %s", p)
		}
		for _, p := range extra {
			fmt.Fprintf(&b, "\n  extra:   %s", p)
		}
		return errors.New(b.String())
	}
	fmt.Printf("ClusterRole %s grants exactly the %d permissions of %s\n", *name, len(want), *wantFile)
	return nil
}

func cmdPod(args []string) error {
	fs := flag.NewFlagSet("pod", flag.ExitOnError)
	in := fs.String("in", "", "rendered manifests")
	name := fs.String("name", "", "Deployment name (default: the only Deployment)")
	_ = fs.Parse(args)
	docs, err := readDocuments(*in)
	if err != nil {
		return err
	}
	var found []appsv1.Deployment
	for _, d := range docs {
		if d.Kind != "Deployment" || (*name != "" && d.Metadata.Name != *name) {
			continue
		}
		var dep appsv1.Deployment
		if err := json.Unmarshal(d.raw, &dep); err != nil {
			return err
		}
		found = append(found, dep)
	}
	if len(found) == 0 || (*name != "" && len(found) != 1) {
		return fmt.Errorf("%s holds %d matching Deployments, want 1 (or, without -name, at least 1)", *in, len(found))
	}
	// One Pod per Deployment (a sharded release has one Deployment per shard), in a List kubectl applies whole.
	list := corev1.List{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "List"}}
	for _, dep := range found {
		pod := corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        dep.Name + "-pod-security-check",
				Labels:      dep.Spec.Template.Labels,
				Annotations: dep.Spec.Template.Annotations,
			},
			Spec: dep.Spec.Template.Spec,
		}
		raw, err := json.Marshal(pod)
		if err != nil {
			return err
		}
		list.Items = append(list.Items, runtime.RawExtension{Raw: raw})
	}
	var out []byte
	if len(list.Items) == 1 {
		out, err = json.MarshalIndent(json.RawMessage(list.Items[0].Raw), "", "  ")
	} else {
		out, err = json.MarshalIndent(list, "", "  ")
	}
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

func cmdPromRules(args []string) error {
	fs := flag.NewFlagSet("promrules", flag.ExitOnError)
	in := fs.String("in", "", "rendered manifests")
	_ = fs.Parse(args)
	docs, err := readDocuments(*in)
	if err != nil {
		return err
	}
	var specs []json.RawMessage
	for _, d := range docs {
		if d.Kind != "PrometheusRule" {
			continue
		}
		var pr struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(d.raw, &pr); err != nil {
			return err
		}
		specs = append(specs, pr.Spec)
	}
	if len(specs) != 1 {
		return fmt.Errorf("%s holds %d PrometheusRules, want 1", *in, len(specs))
	}
	fmt.Println(string(specs[0]))
	return nil
}
