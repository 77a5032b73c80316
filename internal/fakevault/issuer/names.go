package issuer

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

// Well-known extended key usage OIDs used by Key Vault policies.
const (
	EKUServerAuth = "1.3.6.1.5.5.7.3.1"
	EKUClientAuth = "1.3.6.1.5.5.7.3.2"
)

var ekuByOID = map[string]x509.ExtKeyUsage{
	"1.3.6.1.5.5.7.3.1": x509.ExtKeyUsageServerAuth,
	"1.3.6.1.5.5.7.3.2": x509.ExtKeyUsageClientAuth,
	"1.3.6.1.5.5.7.3.3": x509.ExtKeyUsageCodeSigning,
	"1.3.6.1.5.5.7.3.4": x509.ExtKeyUsageEmailProtection,
	"1.3.6.1.5.5.7.3.8": x509.ExtKeyUsageTimeStamping,
	"1.3.6.1.5.5.7.3.9": x509.ExtKeyUsageOCSPSigning,
}

// ParseEKUs maps dotted OIDs to x509 extended key usages; unknown OIDs are kept as such.
func ParseEKUs(oids []string) ([]x509.ExtKeyUsage, []asn1.ObjectIdentifier) {
	var known []x509.ExtKeyUsage
	var unknown []asn1.ObjectIdentifier
	for _, s := range oids {
		if u, ok := ekuByOID[s]; ok {
			known = append(known, u)
			continue
		}
		if oid, err := parseOID(s); err == nil {
			unknown = append(unknown, oid)
		}
	}
	return known, unknown
}

// EKUStrings renders a certificate's extended key usages as dotted OIDs (never nil).
func EKUStrings(c *x509.Certificate) []string {
	out := []string{}
	for _, u := range c.ExtKeyUsage {
		for oid, v := range ekuByOID {
			if v == u {
				out = append(out, oid)
			}
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("invalid OID %q", s)
	}
	return oid, nil
}

var keyUsageNames = []struct {
	name string
	bit  x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
	{"keyCertSign", x509.KeyUsageCertSign},
	{"cRLSign", x509.KeyUsageCRLSign},
	{"encipherOnly", x509.KeyUsageEncipherOnly},
	{"decipherOnly", x509.KeyUsageDecipherOnly},
}

// ParseKeyUsage maps Key Vault key usage names ("digitalSignature", ...) to x509 bits.
func ParseKeyUsage(names []string) (x509.KeyUsage, error) {
	var ku x509.KeyUsage
	for _, n := range names {
		found := false
		for _, k := range keyUsageNames {
			if strings.EqualFold(k.name, n) {
				ku |= k.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown key usage %q", n)
		}
	}
	return ku, nil
}

// KeyUsageStrings renders x509 key usage bits as Key Vault names (never nil).
func KeyUsageStrings(ku x509.KeyUsage) []string {
	out := []string{}
	for _, k := range keyUsageNames {
		if ku&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

var attrOIDs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"S":            {2, 5, 4, 8},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"E":            {1, 2, 840, 113549, 1, 9, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
}

// ParseSubject parses an X.500 subject the way a Key Vault policy writes it
// ("CN=www.contoso.com, O=Contoso, C=US"; separators "," or ";"; keys case-insensitive;
// values may be double-quoted). The first attribute written is the most specific one
// (CN first), as in the service's and .NET's rendering, so the DER order is reversed.
func ParseSubject(s string) (pkix.Name, error) {
	var name pkix.Name
	parts, err := splitRDNs(s)
	if err != nil {
		return name, err
	}
	if len(parts) == 0 {
		return name, fmt.Errorf("empty subject")
	}
	var rdns pkix.RDNSequence
	for i := len(parts) - 1; i >= 0; i-- {
		kv := parts[i]
		eq := strings.IndexByte(kv, '=')
		if eq <= 0 {
			return name, fmt.Errorf("invalid subject component %q", kv)
		}
		key := strings.ToUpper(strings.TrimSpace(kv[:eq]))
		val := strings.TrimSpace(kv[eq+1:])
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		oid, ok := attrOIDs[key]
		if !ok {
			if o, err := parseOID(key); err == nil {
				oid = o
			} else {
				return name, fmt.Errorf("unknown subject attribute %q", key)
			}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: val}})
	}
	// Only ExtraNames are set so that ToRDNSequence keeps exactly this order.
	for _, rdn := range rdns {
		for _, atv := range rdn {
			name.ExtraNames = append(name.ExtraNames, atv)
		}
	}
	return name, nil
}

func splitRDNs(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
		case (c == ',' || c == ';') && !inQuote:
			if p := strings.TrimSpace(cur.String()); p != "" {
				parts = append(parts, p)
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in subject %q", s)
	}
	if p := strings.TrimSpace(cur.String()); p != "" {
		parts = append(parts, p)
	}
	return parts, nil
}

// FormatSubject renders a name like the service does for imported certificates
// ("O=Internet Widgits Pty Ltd, S=Some-State, C=AU"): most specific first, ", " separated, S for state.
func FormatSubject(n pkix.Name) string {
	seq := n.ToRDNSequence()
	short := map[string]string{}
	for k, v := range attrOIDs {
		if k == "ST" || k == "EMAILADDRESS" {
			continue
		}
		short[v.String()] = k
	}
	var parts []string
	for i := len(seq) - 1; i >= 0; i-- {
		for _, atv := range seq[i] {
			k, ok := short[atv.Type.String()]
			if !ok {
				k = "OID." + atv.Type.String()
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, atv.Value))
		}
	}
	return strings.Join(parts, ", ")
}
