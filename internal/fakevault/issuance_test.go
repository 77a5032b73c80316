package fakevault_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/vaultcert/vaultcert/internal/fakevault"
)

func selfPolicy(subject string) *azcertificates.CertificatePolicy {
	return &azcertificates.CertificatePolicy{
		IssuerParameters:          &azcertificates.IssuerParameters{Name: to("Self")},
		X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: to(subject)},
	}
}

func TestCreateSelfSigned(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	pol := selfPolicy("CN=created.example.com")
	pol.KeyProperties = &azcertificates.KeyProperties{KeyType: to(azcertificates.KeyTypeEC), Curve: to(azcertificates.CurveNameP384)}
	pol.SecretProperties = &azcertificates.SecretProperties{ContentType: to("application/x-pem-file")}
	pol.X509CertificateProperties.SubjectAlternativeNames = &azcertificates.SubjectAlternativeNames{
		DNSNames: []*string{to("created.example.com")}, IPAddresses: []*string{to("10.0.0.1")}}
	pol.X509CertificateProperties.ValidityInMonths = to(int32(3))
	resp, err := c.certs.CreateCertificate(ctx(t), "created", azcertificates.CreateCertificateParameters{
		CertificatePolicy: pol, Tags: map[string]*string{"env": to("test")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *resp.Status != "inProgress" || len(resp.CSR) == 0 || *resp.IssuerParameters.Name != "Self" {
		t.Fatalf("create %+v", resp.CertificateOperation)
	}
	csr, err := x509.ParseCertificateRequest(resp.CSR)
	if err != nil || csr.Subject.CommonName != "created.example.com" {
		t.Fatalf("csr %v", err)
	}
	op, err := c.certs.GetCertificateOperation(ctx(t), "created", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *op.Status != "completed" || *op.Target != s.URL()+"certificates/created" {
		t.Fatalf("op %s %v", *op.Status, op.Target)
	}
	got, err := c.certs.GetCertificate(ctx(t), "created", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(got.CER)
	if leaf.Subject.CommonName != "created.example.com" || len(leaf.IPAddresses) != 1 || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P384() {
		t.Fatalf("leaf %v", leaf.Subject)
	}
	if months := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24; months < 85 || months > 95 {
		t.Fatalf("validity %v days", months)
	}
	if *got.Tags["env"] != "test" || got.Attributes.Created.IsZero() {
		t.Fatal("tags/created")
	}
	p := got.Policy
	if *p.LifetimeActions[0].Action.ActionType != azcertificates.CertificatePolicyActionAutoRenew || *p.LifetimeActions[0].Trigger.LifetimePercentage != 80 ||
		len(p.X509CertificateProperties.EnhancedKeyUsage) != 2 || *p.X509CertificateProperties.ValidityInMonths != 3 {
		t.Fatalf("policy defaults %+v", p)
	}
	sec, err := c.secrets.GetSecret(ctx(t), "created", "", nil)
	if err != nil || !strings.HasPrefix(*sec.Value, "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("secret %v", err)
	}
	// policy get/update
	pr, err := c.certs.GetCertificatePolicy(ctx(t), "created", nil)
	if err != nil || *pr.X509CertificateProperties.Subject != "CN=created.example.com" {
		t.Fatal(err)
	}
	up, err := c.certs.UpdateCertificatePolicy(ctx(t), "created", azcertificates.CertificatePolicy{
		X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: to("CN=renamed")}}, nil)
	if err != nil || *up.X509CertificateProperties.Subject != "CN=renamed" || *up.KeyProperties.Curve != azcertificates.CurveNameP384 {
		t.Fatalf("policy update %v", err)
	}
	// update attributes/tags of the version
	u, err := c.certs.UpdateCertificate(ctx(t), "created", "", azcertificates.UpdateCertificateParameters{
		CertificateAttributes: &azcertificates.CertificateAttributes{Enabled: to(false)},
		Tags:                  map[string]*string{"env": to("prod")}}, nil)
	if err != nil || *u.Attributes.Enabled || *u.Tags["env"] != "prod" {
		t.Fatalf("update %v", err)
	}
	_, err = c.secrets.GetSecret(ctx(t), "created", "", nil)
	respErr(t, err, 403, "Forbidden")
}

func TestCreatePendingDurationAndConflict(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, fakevault.Options{Now: clock.Now})
	s.SetPendingDuration(time.Minute)
	c := newClients(t, s, nil, noRetry)
	params := azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=slow")}
	if _, err := c.certs.CreateCertificate(ctx(t), "slow", params, nil); err != nil {
		t.Fatal(err)
	}
	op, _ := c.certs.GetCertificateOperation(ctx(t), "slow", nil)
	if *op.Status != "inProgress" {
		t.Fatal(*op.Status)
	}
	_, err := c.certs.CreateCertificate(ctx(t), "slow", params, nil)
	respErr(t, err, 409, "Conflict")
	got, err := c.certs.GetCertificate(ctx(t), "slow", "", nil) // first version still pending
	if err != nil || *got.Attributes.Enabled || got.CER != nil {
		t.Fatalf("pending get: %v", err)
	}
	clock.Advance(2 * time.Minute)
	op, _ = c.certs.GetCertificateOperation(ctx(t), "slow", nil)
	if *op.Status != "completed" {
		t.Fatal(*op.Status)
	}
	got, _ = c.certs.GetCertificate(ctx(t), "slow", "", nil)
	if !*got.Attributes.Enabled || got.CER == nil || !got.Attributes.Created.Equal(clock.Now()) {
		t.Fatal("not issued")
	}
	// raw headers of create
	resp, _ := rawDo(t, s, http.MethodPost, "/certificates/raw/create?api-version=7.5", `{"policy":{"issuer":{"name":"self"},"x509_props":{"subject":"CN=DefaultPolicy"}}}`)
	if resp.StatusCode != 202 || resp.Header.Get("Retry-After") != "10" ||
		!strings.HasPrefix(resp.Header.Get("Location"), s.URL()+"certificates/raw/pending?api-version=7.5") {
		t.Fatalf("create headers %d %v", resp.StatusCode, resp.Header)
	}
}

func TestCreateWithNamedIssuerAndFailure(t *testing.T) {
	s := startServer(t)
	if err := s.AddIssuer("TestCA"); err != nil {
		t.Fatal(err)
	}
	c := newClients(t, s, nil, noRetry)
	pol := selfPolicy("CN=ca.example.com")
	pol.IssuerParameters.Name = to("TestCA")
	if _, err := c.certs.CreateCertificate(ctx(t), "issued", azcertificates.CreateCertificateParameters{CertificatePolicy: pol}, nil); err != nil {
		t.Fatal(err)
	}
	v, err := s.Latest("issued")
	if err != nil || len(v.Chain) != 3 || !v.Chain[2].Equal(s.IssuerCA("TestCA").Root) {
		t.Fatalf("chain %v", err)
	}
	sec, _ := c.secrets.GetSecret(ctx(t), "issued", "", nil)
	der, _ := base64.StdEncoding.DecodeString(*sec.Value)
	_, leaf, cas, err := pkcs12.DecodeChain(der, "")
	if err != nil || !leaf.Equal(v.Leaf) || len(cas) != 2 {
		t.Fatalf("pfx %v", err)
	}
	// unknown issuer name
	pol.IssuerParameters.Name = to("NoSuchCA")
	_, err = c.certs.CreateCertificate(ctx(t), "x", azcertificates.CreateCertificateParameters{CertificatePolicy: pol}, nil)
	respErr(t, err, 400, "BadParameter")
	// failure
	s.FailNextOperation("failing", "CertificateIssuanceFailed", "The CA refused the request.")
	if _, err := c.certs.CreateCertificate(ctx(t), "failing", azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=f")}, nil); err != nil {
		t.Fatal(err)
	}
	op, err := c.certs.GetCertificateOperation(ctx(t), "failing", nil)
	if err != nil || *op.Status != "failed" || op.Error.Code != "CertificateIssuanceFailed" {
		t.Fatalf("failed op %v %+v", err, op)
	}
	_, err = c.certs.GetCertificate(ctx(t), "failing", "", nil)
	respErr(t, err, 404, "CertificateNotFound")
}

func TestUnknownIssuerMergeCancelDelete(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	pol := &azcertificates.CertificatePolicy{
		IssuerParameters:          &azcertificates.IssuerParameters{Name: to("Unknown"), CertificateTransparency: to(false)},
		X509CertificateProperties: &azcertificates.X509CertificateProperties{Subject: to("CN=MyCert")},
	}
	resp, err := c.certs.CreateCertificate(ctx(t), "merge", azcertificates.CreateCertificateParameters{CertificatePolicy: pol}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(*resp.StatusDetails, "Please Perform Merge") {
		t.Fatal(*resp.StatusDetails)
	}
	op, _ := c.certs.GetCertificateOperation(ctx(t), "merge", nil)
	if *op.Status != "inProgress" {
		t.Fatal("Unknown completed by itself")
	}
	csr, err := x509.ParseCertificateRequest(op.CSR)
	if err != nil {
		t.Fatal(err)
	}
	// sign the CSR with an outside CA
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "Outside CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: csr.Subject, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"merged.example.com"}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	// a certificate for another key is refused
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	badDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &otherKey.PublicKey, caKey)
	_, err = c.certs.MergeCertificate(ctx(t), "merge", azcertificates.MergeCertificateParameters{X509Certificates: [][]byte{badDER}}, nil)
	respErr(t, err, 400, "BadParameter")
	merged, err := c.certs.MergeCertificate(ctx(t), "merge", azcertificates.MergeCertificateParameters{X509Certificates: [][]byte{leafDER, caDER}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(merged.CER) != string(leafDER) {
		t.Fatal("merged cer")
	}
	sec, err := c.secrets.GetSecret(ctx(t), "merge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(*sec.Value)
	key, leaf, cas, err := pkcs12.DecodeChain(der, "")
	if err != nil || len(cas) != 1 || !cas[0].Equal(ca) {
		t.Fatalf("merged secret %v", err)
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatal("merged key")
	}
	op, _ = c.certs.GetCertificateOperation(ctx(t), "merge", nil)
	if *op.Status != "completed" {
		t.Fatal(*op.Status)
	}

	// cancel (recorded: stays inProgress with cancellation_requested) then delete
	if _, err := c.certs.CreateCertificate(ctx(t), "cancel", azcertificates.CreateCertificateParameters{CertificatePolicy: pol}, nil); err != nil {
		t.Fatal(err)
	}
	up, err := c.certs.UpdateCertificateOperation(ctx(t), "cancel", azcertificates.UpdateCertificateOperationParameter{CancellationRequested: to(true)}, nil)
	if err != nil || !*up.CancellationRequested || *up.Status != "inProgress" {
		t.Fatalf("cancel %v", err)
	}
	del, err := c.certs.DeleteCertificateOperation(ctx(t), "cancel", nil)
	if err != nil || *del.Status != "inProgress" {
		t.Fatalf("delete op %v", err)
	}
	_, err = c.certs.GetCertificateOperation(ctx(t), "cancel", nil)
	respErr(t, err, 404, "CertificateNotFound")

	// Self cancellation -> cancelled
	s.SetPendingDuration(time.Hour)
	if _, err := c.certs.CreateCertificate(ctx(t), "cancel2", azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=c")}, nil); err != nil {
		t.Fatal(err)
	}
	up, err = c.certs.UpdateCertificateOperation(ctx(t), "cancel2", azcertificates.UpdateCertificateOperationParameter{CancellationRequested: to(true)}, nil)
	if err != nil || *up.Status != "cancelled" {
		t.Fatalf("self cancel %v", err)
	}
}

func TestImport(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	src := seed(t, s, fakevault.CertSpec{Name: "src", ChainDepth: 3, KeyType: "EC"})
	sec, _ := c.secrets.GetSecret(ctx(t), "src", "", nil)

	// PFX
	imp, err := c.certs.ImportCertificate(ctx(t), "imported", azcertificates.ImportCertificateParameters{
		Base64EncodedCertificate: sec.Value,
		CertificateAttributes:    &azcertificates.CertificateAttributes{Enabled: to(false)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *imp.Policy.IssuerParameters.Name != "Unknown" || *imp.Policy.LifetimeActions[0].Action.ActionType != "EmailContacts" || *imp.Attributes.Enabled {
		t.Fatalf("import policy %+v", imp.Policy)
	}
	if string(imp.CER) != string(src.Leaf.Raw) {
		t.Fatal("imported cer")
	}

	// PEM with a scrambled chain and preserveCertOrder
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_ = key
	var b strings.Builder
	for _, cert := range []*x509.Certificate{src.Chain[2], src.Chain[1], src.Chain[0]} {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	der, _ := base64.StdEncoding.DecodeString(*sec.Value)
	k, _, _, _ := pkcs12.DecodeChain(der, "")
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	b.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
	pemText := b.String()
	for _, preserve := range []bool{false, true} {
		name := "pem-import"
		if preserve {
			name = "pem-preserve"
		}
		_, err = c.certs.ImportCertificate(ctx(t), name, azcertificates.ImportCertificateParameters{
			Base64EncodedCertificate: &pemText, PreserveCertOrder: to(preserve),
			CertificatePolicy: &azcertificates.CertificatePolicy{SecretProperties: &azcertificates.SecretProperties{ContentType: to("application/x-pem-file")}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := c.secrets.GetSecret(ctx(t), name, "", nil)
		rest := []byte(*got.Value)
		var first *x509.Certificate
		for first == nil {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				t.Fatal("no certificate")
			}
			if blk.Type == "CERTIFICATE" {
				first, _ = x509.ParseCertificate(blk.Bytes)
			}
		}
		if first.Equal(src.Leaf) == preserve {
			t.Fatalf("preserve=%v: first certificate is the leaf: %v", preserve, first.Equal(src.Leaf))
		}
	}
	// no key
	leafOnly := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: src.Leaf.Raw}))
	_, err = c.certs.ImportCertificate(ctx(t), "nokey", azcertificates.ImportCertificateParameters{Base64EncodedCertificate: &leafOnly}, nil)
	respErr(t, err, 400, "BadParameter")
}

func TestSoftDeleteRecoverPurge(t *testing.T) {
	s := startServer(t)
	c := newClients(t, s, nil, noRetry)
	v := seed(t, s, fakevault.CertSpec{Name: "gone", KeyType: "EC"})
	del, err := c.certs.DeleteCertificate(ctx(t), "gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *del.RecoveryID != s.URL()+"deletedcertificates/gone" || del.ScheduledPurgeDate.Sub(*del.DeletedDate) != 90*24*time.Hour {
		t.Fatalf("deleted %+v", del)
	}
	_, err = c.certs.GetCertificate(ctx(t), "gone", "", nil)
	respErr(t, err, 404, "CertificateNotFound")
	_, err = c.secrets.GetSecret(ctx(t), "gone", v.Version, nil)
	respErr(t, err, 404, "SecretNotFound")
	_, err = c.certs.CreateCertificate(ctx(t), "gone", azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=x")}, nil)
	if inner := respErr(t, err, 409, "Conflict"); inner != "ObjectIsDeletedButRecoverable" {
		t.Fatal(inner)
	}
	if _, err := s.Seed(fakevault.CertSpec{Name: "gone"}); err == nil {
		t.Fatal("seed on a deleted name")
	}
	d, err := c.certs.GetDeletedCertificate(ctx(t), "gone", nil)
	if err != nil || d.ID.Version() != v.Version {
		t.Fatal(err)
	}
	p := c.certs.NewListDeletedCertificatePropertiesPager(nil)
	pg, err := p.NextPage(ctx(t))
	if err != nil || len(pg.Value) != 1 || *pg.Value[0].RecoveryID == "" {
		t.Fatal(err)
	}
	rec, err := c.certs.RecoverDeletedCertificate(ctx(t), "gone", nil)
	if err != nil || rec.ID.Version() != v.Version {
		t.Fatal(err)
	}
	if _, err := c.secrets.GetSecret(ctx(t), "gone", v.Version, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.certs.PurgeDeletedCertificate(ctx(t), "gone", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.certs.GetDeletedCertificate(ctx(t), "gone", nil)
	respErr(t, err, 404, "CertificateNotFound")
	if _, err := c.certs.CreateCertificate(ctx(t), "gone", azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=x")}, nil); err != nil {
		t.Fatal(err)
	}
	// asynchronous deletion
	clock := newFakeClock()
	s2 := startServer(t, fakevault.Options{Now: clock.Now})
	s2.SetDeletionDelay(20 * time.Second)
	seedEC(t, s2, "slow")
	c2 := newClients(t, s2, nil, noRetry)
	if _, err := c2.certs.DeleteCertificate(ctx(t), "slow", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c2.certs.GetDeletedCertificate(ctx(t), "slow", nil)
	respErr(t, err, 404, "CertificateNotFound")
	_, err = c2.certs.CreateCertificate(ctx(t), "slow", azcertificates.CreateCertificateParameters{CertificatePolicy: selfPolicy("CN=x")}, nil)
	if inner := respErr(t, err, 409, "Conflict"); inner != "ObjectIsBeingDeleted" {
		t.Fatal(inner)
	}
	clock.Advance(21 * time.Second)
	if _, err := c2.certs.GetDeletedCertificate(ctx(t), "slow", nil); err != nil {
		t.Fatal(err)
	}
}

func TestAutoRenew(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, fakevault.Options{Now: clock.Now})
	c := newClients(t, s, nil, noRetry)
	pol := selfPolicy("CN=renew")
	pol.KeyProperties = &azcertificates.KeyProperties{KeyType: to(azcertificates.KeyTypeEC), ReuseKey: to(true)}
	pol.LifetimeActions = []*azcertificates.LifetimeAction{{
		Trigger: &azcertificates.LifetimeActionTrigger{DaysBeforeExpiry: to(int32(30))},
		Action:  &azcertificates.LifetimeActionType{ActionType: to(azcertificates.CertificatePolicyActionAutoRenew)},
	}}
	if _, err := c.certs.CreateCertificate(ctx(t), "renew", azcertificates.CreateCertificateParameters{CertificatePolicy: pol}, nil); err != nil {
		t.Fatal(err)
	}
	v1, err := s.Latest("renew")
	if err != nil || v1.Pending {
		t.Fatalf("%v %+v", err, v1)
	}
	if n := s.AdvanceRenewals(); n != 0 {
		t.Fatalf("renewed early: %d", n)
	}
	clock.Advance(340 * 24 * time.Hour)
	// driven by the clock on the next request
	got, err := c.certs.GetCertificate(ctx(t), "renew", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID.Version() == v1.Version {
		t.Fatal("not renewed")
	}
	v2, _ := s.Latest("renew")
	if !v2.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(v1.Leaf.PublicKey) {
		t.Fatal("reuse_key not honoured")
	}
	if n := s.AdvanceRenewals(); n != 0 {
		t.Fatalf("renewed twice: %d", n)
	}
	// seeded with AutoRenew percentage: new key each time
	seed(t, s, fakevault.CertSpec{Name: "seeded", KeyType: "EC", Validity: 10 * 24 * time.Hour, AutoRenewPercentage: 50})
	sv1, _ := s.Latest("seeded")
	clock.Advance(6 * 24 * time.Hour)
	if n := s.AdvanceRenewals(); n != 1 {
		t.Fatalf("renewed %d", n)
	}
	sv2, _ := s.Latest("seeded")
	if sv2.Version == sv1.Version || sv2.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(sv1.Leaf.PublicKey) {
		t.Fatal("seeded renewal")
	}
	// a seeded certificate without AutoRenew never renews by itself
	seed(t, s, fakevault.CertSpec{Name: "plain", KeyType: "EC", Validity: 24 * time.Hour})
	p1, _ := s.Latest("plain")
	clock.Advance(23 * time.Hour)
	s.AdvanceRenewals()
	if p2, _ := s.Latest("plain"); p2.Version != p1.Version {
		t.Fatal("plain renewed")
	}
}
