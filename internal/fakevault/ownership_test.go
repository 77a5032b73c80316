package fakevault_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// longPolicy is a self-signed EC policy of months with AutoRenew at pct % of the lifetime.
func longPolicy(months, pct int32) *azcertificates.CertificatePolicy {
	pol := selfPolicy("CN=long.example.com")
	pol.KeyProperties = &azcertificates.KeyProperties{KeyType: to(azcertificates.KeyTypeEC)}
	pol.X509CertificateProperties.ValidityInMonths = to(months)
	pol.LifetimeActions = []*azcertificates.LifetimeAction{{
		Trigger: &azcertificates.LifetimeActionTrigger{LifetimePercentage: to(pct)},
		Action:  &azcertificates.LifetimeActionType{ActionType: to(azcertificates.CertificatePolicyActionAutoRenew)},
	}}
	return pol
}

// TestAutoRenewLongValidity: AutoRenew fires at its percentage for long validities too. Before the fix the
// lifetime times the percentage overflowed: a 60-month certificate at 80 % never renewed, a 120-month one
// renewed after about 26 months instead of 96.
func TestAutoRenewLongValidity(t *testing.T) {
	for _, months := range []int32{60, 120, 1200} {
		t.Run(fmt.Sprint(months), func(t *testing.T) {
			clock := newFakeClock()
			s := startServer(t, fakevault.Options{Now: clock.Now})
			c := newClients(t, s, nil, noRetry)
			name := fmt.Sprintf("long%d", months)
			if _, err := c.certs.CreateCertificate(ctx(t), name, azcertificates.CreateCertificateParameters{CertificatePolicy: longPolicy(months, 80)}, nil); err != nil {
				t.Fatal(err)
			}
			v1, err := s.Latest(name)
			if err != nil || v1.Pending {
				t.Fatalf("%v %+v", err, v1)
			}
			nbf, life := v1.Leaf.NotBefore, v1.Leaf.NotAfter.Sub(v1.Leaf.NotBefore)
			at := func(pct time.Duration) { clock.Advance(nbf.Add(life / 100 * pct).Sub(clock.Now())) }

			at(30)
			if n := s.AdvanceRenewals(); n != 0 {
				t.Fatalf("renewed at 30 %% of a %d-month lifetime, the policy says 80 %%", months)
			}
			at(79)
			if n := s.AdvanceRenewals(); n != 0 {
				t.Fatalf("renewed at 79 %% of a %d-month lifetime", months)
			}
			at(81)
			if n := s.AdvanceRenewals(); n != 1 {
				t.Fatalf("renewed %d certificates at 81 %% of a %d-month lifetime, want 1", n, months)
			}
			if n := s.AdvanceRenewals(); n != 0 {
				t.Fatalf("the renewed version renewed again at once (%d)", n)
			}
		})
	}
}

// TestTagsAreKeptPerVersionAndLimited: create stores the request's tags on the new version, GET and the
// version list return them, and more than Key Vault's 15 tags or over-long names and values are refused.
func TestTagsAreKeptPerVersionAndLimited(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	tags := map[string]*string{"vaultcert.io-namespace": to("shop"), "vaultcert.io-name": to("web"), "env": to("prod")}
	if _, err := c.certs.CreateCertificate(ctx(t), "tagged", azcertificates.CreateCertificateParameters{
		CertificatePolicy: selfPolicy("CN=tagged"), Tags: tags}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.certs.GetCertificate(ctx(t), "tagged", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tags) != 3 || *got.Tags["vaultcert.io-namespace"] != "shop" || *got.Tags["env"] != "prod" {
		t.Fatalf("GET tags = %v", got.Tags)
	}
	// A second version without tags has none; the first keeps its own.
	if _, err := c.certs.CreateCertificate(ctx(t), "tagged", azcertificates.CreateCertificateParameters{}, nil); err != nil {
		t.Fatal(err)
	}
	pager := c.certs.NewListCertificatePropertiesVersionsPager("tagged", nil)
	var withTags, without int
	for pager.More() {
		page, err := pager.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Value {
			if it.Tags["vaultcert.io-name"] != nil && *it.Tags["vaultcert.io-name"] == "web" {
				withTags++
			} else if len(it.Tags) == 0 {
				without++
			}
		}
	}
	if withTags != 1 || without != 1 {
		t.Fatalf("version list: %d versions with the tags, %d without; want 1 and 1", withTags, without)
	}

	many := map[string]*string{}
	for i := 0; i < 16; i++ {
		many[fmt.Sprintf("t%d", i)] = to("v")
	}
	_, err = c.certs.CreateCertificate(ctx(t), "tagged", azcertificates.CreateCertificateParameters{Tags: many}, nil)
	respErr(t, err, http.StatusBadRequest, fakevault.CodeBadParameter)
	_, err = c.certs.UpdateCertificate(ctx(t), "tagged", "", azcertificates.UpdateCertificateParameters{
		Tags: map[string]*string{"long": to(strings.Repeat("x", 257))}}, nil)
	respErr(t, err, http.StatusBadRequest, fakevault.CodeBadParameter)
	_, err = c.certs.UpdateCertificate(ctx(t), "tagged", "", azcertificates.UpdateCertificateParameters{
		Tags: map[string]*string{strings.Repeat("n", 513): to("v")}}, nil)
	respErr(t, err, http.StatusBadRequest, fakevault.CodeBadParameter)
	delete(many, "t15")
	if _, err := c.certs.UpdateCertificate(ctx(t), "tagged", "", azcertificates.UpdateCertificateParameters{Tags: many}, nil); err != nil {
		t.Fatalf("15 tags are allowed: %v", err)
	}
}

// TestIssueBackdate: a backdated name gets versions whose validity starts that much earlier, while Key Vault's
// created time is now; other names are not affected.
func TestIssueBackdate(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, fakevault.Options{Now: clock.Now})
	c := newClients(t, s, nil, noRetry)
	s.SetIssueBackdate("Old", 20*24*time.Hour) // names are case-insensitive
	for _, name := range []string{"old", "new"} {
		if _, err := c.certs.CreateCertificate(ctx(t), name, azcertificates.CreateCertificateParameters{CertificatePolicy: longPolicy(1, 80)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := s.Latest("old")
	fresh, _ := s.Latest("new")
	if d := clock.Now().Sub(old.Leaf.NotBefore); d < 20*24*time.Hour || d > 20*24*time.Hour+time.Hour {
		t.Errorf("backdated notBefore is %v before now, want 20 days (and 10 minutes)", d)
	}
	if d := clock.Now().Sub(fresh.Leaf.NotBefore); d > time.Hour {
		t.Errorf("a name that is not backdated starts %v before now", d)
	}
	got, err := c.certs.GetCertificate(ctx(t), "old", "", nil)
	if err != nil || !got.Attributes.Created.Equal(clock.Now()) {
		t.Fatalf("created = %v (%v), want now", got.Attributes.Created, err)
	}
	// Rotation (and AutoRenew) of the name are backdated too; 0 turns it off.
	if v, err := s.Rotate("old"); err != nil || clock.Now().Sub(v.Leaf.NotBefore) < 20*24*time.Hour {
		t.Fatalf("rotated version: %v, notBefore %v", err, v.Leaf.NotBefore)
	}
	s.SetIssueBackdate("old", 0)
	if v, err := s.Rotate("old"); err != nil || clock.Now().Sub(v.Leaf.NotBefore) > time.Hour {
		t.Fatalf("after turning it off: %v, notBefore %v", err, v.Leaf.NotBefore)
	}
}
