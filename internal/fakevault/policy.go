package fakevault

import (
	"crypto/x509"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/vaultcert/vaultcert/internal/fakevault/issuer"
)

// Issuer names with special meaning.
const (
	IssuerSelf    = "Self"
	IssuerUnknown = "Unknown"
)

func clonePolicy(p *wirePolicy) *wirePolicy {
	if p == nil {
		return &wirePolicy{}
	}
	b, _ := json.Marshal(p)
	var out wirePolicy
	_ = json.Unmarshal(b, &out)
	// keep explicit empty slices the way they were
	if p.X509Props != nil && out.X509Props != nil {
		if p.X509Props.Ekus != nil && out.X509Props.Ekus == nil {
			out.X509Props.Ekus = []string{}
		}
		if p.X509Props.KeyUsage != nil && out.X509Props.KeyUsage == nil {
			out.X509Props.KeyUsage = []string{}
		}
	}
	if p.LifetimeActions != nil && out.LifetimeActions == nil {
		out.LifetimeActions = []wireLifetimeAction{}
	}
	return &out
}

func isUnknownIssuer(p *wirePolicy) bool {
	return p != nil && p.Issuer != nil && strings.EqualFold(p.Issuer.Name, IssuerUnknown)
}

func isSelfIssuer(p *wirePolicy) bool {
	return p == nil || p.Issuer == nil || p.Issuer.Name == "" || strings.EqualFold(p.Issuer.Name, IssuerSelf)
}

// keyNotExportable reports whether the policy explicitly marks the key as not exportable.
func keyNotExportable(p *wirePolicy) bool {
	return p.KeyProps != nil && p.KeyProps.Exportable != nil && !*p.KeyProps.Exportable
}

// normalizePolicy applies the service defaults to a create/update policy and validates it.
func normalizePolicy(in *wirePolicy) (*wirePolicy, *vaultError) {
	p := clonePolicy(in)
	p.ID, p.Attributes = "", nil
	if p.Issuer == nil || p.Issuer.Name == "" {
		p.Issuer = &wireIssuer{Name: IssuerSelf}
	}
	kp := p.KeyProps
	if kp == nil {
		kp = &wireKeyProps{}
		p.KeyProps = kp
	}
	if kp.Kty == "" {
		kp.Kty = "RSA"
		if kp.Crv != "" {
			kp.Kty = "EC"
		}
	}
	spec := issuer.KeySpec{Type: kp.Kty, Curve: kp.Crv}
	if kp.KeySize != nil {
		spec.Size = *kp.KeySize
	}
	spec = spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, errBadParameter("Property policy.key_props is invalid: %s.", err)
	}
	kp.KeySize = ptr(spec.Size)
	if spec.IsEC() {
		kp.Crv = spec.Curve
	} else {
		kp.Crv = ""
	}
	if kp.Exportable == nil {
		kp.Exportable = ptr(true)
	}
	if kp.ReuseKey == nil {
		kp.ReuseKey = ptr(false)
	}
	if p.SecretProps == nil {
		p.SecretProps = &wireSecretProps{}
	}
	switch strings.ToLower(p.SecretProps.ContentType) {
	case "":
		p.SecretProps.ContentType = issuer.ContentTypePKCS12
	case issuer.ContentTypePKCS12, issuer.ContentTypePEM:
		p.SecretProps.ContentType = strings.ToLower(p.SecretProps.ContentType)
	default:
		return nil, errBadParameter("Property policy.secret_props.contentType has invalid value '%s'.", p.SecretProps.ContentType)
	}
	xp := p.X509Props
	if xp == nil {
		xp = &wireX509Props{}
		p.X509Props = xp
	}
	if xp.Subject == "" && (xp.Sans == nil || len(xp.Sans.DNSNames)+len(xp.Sans.Emails)+len(xp.Sans.UPNs)+len(xp.Sans.IPAddresses)+len(xp.Sans.URIs) == 0) {
		return nil, errBadParameter("Property policy.x509_props must have a subject or subject alternative names.")
	}
	if xp.Subject != "" {
		if _, err := issuer.ParseSubject(xp.Subject); err != nil {
			return nil, errBadParameter("Property policy.x509_props.subject has invalid value: %s.", err)
		}
	}
	if xp.Ekus == nil {
		xp.Ekus = []string{issuer.EKUServerAuth, issuer.EKUClientAuth}
	}
	if xp.KeyUsage == nil {
		if spec.IsEC() {
			xp.KeyUsage = []string{"digitalSignature"} // inferred for EC keys
		} else {
			xp.KeyUsage = []string{"digitalSignature", "keyEncipherment"}
		}
	}
	if _, err := issuer.ParseKeyUsage(xp.KeyUsage); err != nil {
		return nil, errBadParameter("Property policy.x509_props.key_usage is invalid: %s.", err)
	}
	if xp.ValidityMonths == nil || *xp.ValidityMonths == 0 {
		xp.ValidityMonths = ptr(12)
	}
	if *xp.ValidityMonths < 1 || *xp.ValidityMonths > 1200 {
		return nil, errBadParameter("Property policy.x509_props.validity_months has invalid value %d.", *xp.ValidityMonths)
	}
	if xp.BasicConstraints == nil {
		xp.BasicConstraints = &wireBasicConstraints{CA: false}
	}
	if xp.Sans != nil {
		for _, ip := range xp.Sans.IPAddresses {
			if net.ParseIP(ip) == nil {
				return nil, errBadParameter("Property policy.x509_props.sans.ipAddresses has invalid value '%s'.", ip)
			}
		}
		for _, u := range xp.Sans.URIs {
			if _, err := url.Parse(u); err != nil {
				return nil, errBadParameter("Property policy.x509_props.sans.uris has invalid value '%s'.", u)
			}
		}
	}
	if p.LifetimeActions == nil {
		action := "AutoRenew"
		if isUnknownIssuer(p) {
			action = "EmailContacts"
		}
		p.LifetimeActions = []wireLifetimeAction{{Trigger: wireTrigger{LifetimePercentage: ptr(80)}, Action: wireAction{ActionType: action}}}
	}
	for _, la := range p.LifetimeActions {
		t := la.Trigger
		if (t.LifetimePercentage == nil) == (t.DaysBeforeExpiry == nil) {
			return nil, errBadParameter("A lifetime action trigger must have exactly one of lifetime_percentage and days_before_expiry.")
		}
		if t.LifetimePercentage != nil && (*t.LifetimePercentage < 1 || *t.LifetimePercentage > 99) {
			return nil, errBadParameter("Property lifetime_percentage has invalid value %d.", *t.LifetimePercentage)
		}
		if t.DaysBeforeExpiry != nil && *t.DaysBeforeExpiry < 1 {
			return nil, errBadParameter("Property days_before_expiry has invalid value %d.", *t.DaysBeforeExpiry)
		}
		switch la.Action.ActionType {
		case "AutoRenew", "EmailContacts":
		default:
			return nil, errBadParameter("Property action_type has invalid value '%s'.", la.Action.ActionType)
		}
		if la.Action.ActionType == "AutoRenew" && isUnknownIssuer(p) {
			return nil, errBadParameter("AutoRenew is not supported for certificates with issuer 'Unknown'.")
		}
	}
	return p, nil
}

// mergePolicy applies a PATCH /policy body onto the stored policy.
func mergePolicy(cur, patch *wirePolicy) *wirePolicy {
	p := clonePolicy(cur)
	if patch.KeyProps != nil {
		kp := patch.KeyProps
		if p.KeyProps == nil {
			p.KeyProps = &wireKeyProps{}
		}
		if kp.Kty != "" {
			if !strings.EqualFold(kp.Kty, p.KeyProps.Kty) {
				p.KeyProps.KeySize, p.KeyProps.Crv = nil, ""
			}
			p.KeyProps.Kty = kp.Kty
		}
		patchPtr(&p.KeyProps.KeySize, kp.KeySize)
		patchString(&p.KeyProps.Crv, kp.Crv)
		patchPtr(&p.KeyProps.Exportable, kp.Exportable)
		patchPtr(&p.KeyProps.ReuseKey, kp.ReuseKey)
	}
	if patch.SecretProps != nil && patch.SecretProps.ContentType != "" {
		p.SecretProps = &wireSecretProps{ContentType: patch.SecretProps.ContentType}
	}
	if x := patch.X509Props; x != nil {
		if p.X509Props == nil {
			p.X509Props = &wireX509Props{}
		}
		patchString(&p.X509Props.Subject, x.Subject)
		patchPtr(&p.X509Props.Sans, x.Sans)
		patchSlice(&p.X509Props.Ekus, x.Ekus)
		patchSlice(&p.X509Props.KeyUsage, x.KeyUsage)
		patchPtr(&p.X509Props.ValidityMonths, x.ValidityMonths)
	}
	patchSlice(&p.LifetimeActions, patch.LifetimeActions)
	if patch.Issuer != nil {
		if p.Issuer == nil {
			p.Issuer = &wireIssuer{}
		}
		if patch.Issuer.Name != "" {
			if !strings.EqualFold(patch.Issuer.Name, p.Issuer.Name) && patch.LifetimeActions == nil {
				p.LifetimeActions = nil // defaults follow the issuer
			}
			p.Issuer.Name = patch.Issuer.Name
		}
		patchString(&p.Issuer.Cty, patch.Issuer.Cty)
		patchPtr(&p.Issuer.CertTransparency, patch.Issuer.CertTransparency)
	}
	return p
}

// patchPtr sets *dst to v when a PATCH body carries the field (v non-nil).
func patchPtr[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

// patchSlice sets *dst to v when a PATCH body carries the field (v non-nil, possibly empty).
func patchSlice[T any](dst *[]T, v []T) {
	if v != nil {
		*dst = v
	}
}

// patchString sets *dst to v when a PATCH body carries the field (v non-empty).
func patchString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// patchPolicy merges a PATCH policy onto the certificate's, validates it and stores it as updated at now.
func (c *certificate) patchPolicy(patch *wirePolicy, now time.Time) *vaultError {
	p, e := normalizePolicy(mergePolicy(c.policy, patch))
	if e != nil {
		return e
	}
	c.policy, c.policyUpdated, c.spec = p, now, nil
	return nil
}

func keySpecOf(p *wirePolicy) issuer.KeySpec {
	spec := issuer.KeySpec{Type: "RSA"}
	if kp := p.KeyProps; kp != nil {
		spec.Type, spec.Curve = kp.Kty, kp.Crv
		if kp.KeySize != nil {
			spec.Size = *kp.KeySize
		}
	}
	return spec.Normalize()
}

// leafFromPolicy turns x509_props into the leaf to issue, valid from now-10min for validity_months.
func leafFromPolicy(p *wirePolicy, now time.Time) (issuer.Leaf, error) {
	xp := p.X509Props
	var l issuer.Leaf
	if xp.Subject != "" {
		name, err := issuer.ParseSubject(xp.Subject)
		if err != nil {
			return l, err
		}
		l.Subject = name
	}
	if s := xp.Sans; s != nil {
		l.DNSNames = s.DNSNames
		l.Emails = s.Emails
		for _, ip := range s.IPAddresses {
			if v := net.ParseIP(ip); v != nil {
				l.IPAddresses = append(l.IPAddresses, v)
			}
		}
		for _, u := range s.URIs {
			if v, err := url.Parse(u); err == nil {
				l.URIs = append(l.URIs, v)
			}
		}
	}
	l.EKUs = xp.Ekus
	ku, err := issuer.ParseKeyUsage(xp.KeyUsage)
	if err != nil {
		return l, err
	}
	l.KeyUsage = ku
	months := 12
	if xp.ValidityMonths != nil {
		months = *xp.ValidityMonths
	}
	l.NotBefore = now.Add(-10 * time.Minute).Truncate(time.Second)
	l.NotAfter = now.AddDate(0, months, 0).Truncate(time.Second)
	return l, nil
}

// policyFromCertificate derives the policy the service gives an imported or merged certificate.
func policyFromCertificate(leaf *x509.Certificate, contentType string, exportable bool) *wirePolicy {
	spec := issuer.SpecOf(leaf.PublicKey)
	kp := &wireKeyProps{Exportable: ptr(exportable), Kty: spec.Type, KeySize: ptr(spec.Size), ReuseKey: ptr(false)}
	if spec.IsEC() {
		kp.Crv = spec.Curve
	}
	months := int(leaf.NotAfter.Sub(leaf.NotBefore).Hours()/24/30.4375 + 0.5)
	if months < 1 {
		months = 1
	}
	xp := &wireX509Props{
		Subject:          issuer.FormatSubject(leaf.Subject),
		Ekus:             issuer.EKUStrings(leaf),
		KeyUsage:         issuer.KeyUsageStrings(leaf.KeyUsage),
		ValidityMonths:   ptr(months),
		BasicConstraints: &wireBasicConstraints{CA: leaf.IsCA},
	}
	if len(leaf.DNSNames)+len(leaf.EmailAddresses)+len(leaf.IPAddresses)+len(leaf.URIs) > 0 {
		s := &wireSans{DNSNames: leaf.DNSNames, Emails: leaf.EmailAddresses}
		for _, ip := range leaf.IPAddresses {
			s.IPAddresses = append(s.IPAddresses, ip.String())
		}
		for _, u := range leaf.URIs {
			s.URIs = append(s.URIs, u.String())
		}
		xp.Sans = s
	}
	if contentType == "" {
		contentType = issuer.ContentTypePKCS12
	}
	return &wirePolicy{
		KeyProps:        kp,
		SecretProps:     &wireSecretProps{ContentType: contentType},
		X509Props:       xp,
		LifetimeActions: []wireLifetimeAction{{Trigger: wireTrigger{LifetimePercentage: ptr(80)}, Action: wireAction{ActionType: "EmailContacts"}}},
		Issuer:          &wireIssuer{Name: IssuerUnknown},
	}
}

// renewalTime returns when the policy's AutoRenew action fires for a version, or false.
func renewalTime(p *wirePolicy, nbf, exp time.Time) (time.Time, bool) {
	if p == nil {
		return time.Time{}, false
	}
	for _, la := range p.LifetimeActions {
		if la.Action.ActionType != "AutoRenew" {
			continue
		}
		switch {
		case la.Trigger.LifetimePercentage != nil:
			return triggerTime(nbf, exp, *la.Trigger.LifetimePercentage, 0), true
		case la.Trigger.DaysBeforeExpiry != nil:
			return triggerTime(nbf, exp, 0, *la.Trigger.DaysBeforeExpiry), true
		}
	}
	return time.Time{}, false
}

// triggerTime is when a lifetime trigger (a percentage of the lifetime, or days before expiry) fires for a
// version valid from nbf to exp, kept inside that validity. The lifetime in nanoseconds times a percentage
// exceeds int64 from about 44 months at 80 %, and validity_months goes up to 1200: the share is taken of the
// hundredths first, so no validity overflows.
func triggerTime(nbf, exp time.Time, pct, days int) time.Time {
	if !exp.After(nbf) {
		return exp
	}
	life := exp.Sub(nbf)
	var t time.Time
	switch {
	case pct > 0:
		p := time.Duration(min(pct, 100))
		t = nbf.Add(life/100*p + life%100*p/100)
	case days > 0:
		if int64(days) > int64(life/(24*time.Hour)) {
			return nbf // more days than the lifetime: due from the start
		}
		t = exp.Add(-time.Duration(days) * 24 * time.Hour)
	default:
		return exp
	}
	if t.Before(nbf) {
		return nbf
	}
	if t.After(exp) {
		return exp
	}
	return t
}
