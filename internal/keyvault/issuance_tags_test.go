package keyvault

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// TestTaggedCreateListAndSet: the tags a create sends land on that version only, the version list returns
// every version's tags newest first, and a tag update replaces one version's tags.
func TestTaggedCreateListAndSet(t *testing.T) {
	e := newTestEnv(t)
	tc := e.client()
	ctx := ctxT(t)
	p := Policy{DNSNames: []string{"tags.example.com"}, KeyType: "EC"}
	first := map[string]string{"vaultcert.io-namespace": "shop", "vaultcert.io-name": "web"}
	if _, err := tc.CreateCertificate(ctx, "tags", p, first); err != nil {
		t.Fatal(err)
	}
	second := map[string]string{"vaultcert.io-namespace": "shop", "vaultcert.io-name": "web", "vaultcert.io-requested": "2026-01-01T00:00:00Z"}
	if _, err := tc.CreateCertificate(ctx, "tags", p, second); err != nil {
		t.Fatal(err)
	}
	cert, err := e.client().GetCertificate(ctx, "tags", "")
	if err != nil || !reflect.DeepEqual(cert.Tags, second) {
		t.Fatalf("latest version's tags = %v (%v), want %v", cert.Tags, err, second)
	}
	versions, err := tc.ListCertificateVersions(ctx, "tags")
	if err != nil || len(versions) != 2 {
		t.Fatalf("versions = %+v, %v", versions, err)
	}
	if versions[0].Created.Before(versions[1].Created) {
		t.Errorf("versions are not newest first: %v then %v", versions[0].Created, versions[1].Created)
	}
	byVersion := map[string]map[string]string{}
	for _, v := range versions {
		byVersion[v.Version] = v.Tags
	}
	if !reflect.DeepEqual(byVersion[cert.Version], second) {
		t.Errorf("listed tags of the latest = %v, want %v", byVersion[cert.Version], second)
	}

	replaced := map[string]string{"owner": "someone-else"}
	if err := tc.SetCertificateTags(ctx, "tags", cert.Version, replaced); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.client().GetCertificate(ctx, "tags", ""); !reflect.DeepEqual(got.Tags, replaced) {
		t.Errorf("after SetCertificateTags: %v, want %v", got.Tags, replaced)
	}

	// Over Key Vault's limits: refused before any request is sent.
	many := map[string]string{}
	for i := 0; i <= MaxTags; i++ {
		many[fmt.Sprint("t", i)] = "v"
	}
	before := e.s.CountFor(fakevault.OpCreateCertificate, "tags")
	if _, err := tc.CreateCertificate(ctx, "tags", p, many); err == nil {
		t.Error("16 tags were accepted")
	}
	if n := e.s.CountFor(fakevault.OpCreateCertificate, "tags"); n != before {
		t.Errorf("a create with too many tags reached Key Vault")
	}
}
