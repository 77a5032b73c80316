package issuer

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Content types of certificate-backed secrets.
const (
	ContentTypePKCS12 = "application/x-pkcs12"
	ContentTypePEM    = "application/x-pem-file"
)

// pfxEncoder matches what the service was seen to send: 3DES key and certificate bags and a
// SHA-1 MAC, 2000 iterations each, empty password.
var pfxEncoder = pkcs12.LegacyDES.WithIterations(2000)

// EncodePFX returns the standard base64 of a PFX with an empty password holding key (may be nil:
// then a certificate-only PFX) and certs in the given order. The first certificate carries the
// localKeyID attribute (go-pkcs12 cannot put it on a later one).
func EncodePFX(key crypto.PrivateKey, certs []*x509.Certificate) (string, error) {
	if len(certs) == 0 {
		return "", errors.New("issuer: no certificates")
	}
	var der []byte
	var err error
	if key == nil {
		der, err = pfxEncoder.EncodeTrustStore(certs, "")
	} else {
		der, err = pfxEncoder.Encode(key, certs[0], certs[1:], "")
	}
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// EncodePEM returns PEM text with the PKCS#8 "PRIVATE KEY" first (when key is not nil), then the
// certificates in the given order, as the service does.
func EncodePEM(key crypto.PrivateKey, certs []*x509.Certificate) (string, error) {
	var b strings.Builder
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return "", err
		}
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	for _, c := range certs {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return b.String(), nil
}

// Encode encodes key and certs for the content type (PEM for application/x-pem-file, else PFX).
func Encode(contentType string, key crypto.PrivateKey, certs []*x509.Certificate) (string, error) {
	if strings.EqualFold(contentType, ContentTypePEM) {
		return EncodePEM(key, certs)
	}
	return EncodePFX(key, certs)
}

// Decoded is a key and certificates read from an import value.
type Decoded struct {
	Key   crypto.Signer       // the private key (nil when the value has none)
	Certs []*x509.Certificate // in the order they appear
}

// DecodeValue reads an import value: PEM text (any order of blocks; PRIVATE KEY, RSA PRIVATE KEY,
// EC PRIVATE KEY, CERTIFICATE), or standard base64 of a PFX protected by password.
func DecodeValue(value, password string) (*Decoded, error) {
	if strings.Contains(value, "-----BEGIN") {
		return decodePEM([]byte(value))
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return nil, errors.New("the value is neither PEM nor base64")
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, password)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("unsupported private key type")
	}
	return &Decoded{Key: signer, Certs: append([]*x509.Certificate{leaf}, cas...)}, nil
}

func decodePEM(data []byte) (*Decoded, error) {
	d := &Decoded{}
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, err
			}
			d.Certs = append(d.Certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			k, err := parseKey(blk)
			if err != nil {
				return nil, err
			}
			d.Key = k
		}
	}
	if len(d.Certs) == 0 {
		return nil, errors.New("no certificate in PEM value")
	}
	return d, nil
}

func parseKey(blk *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("unsupported private key type")
	}
	return s, nil
}

// OrderChain returns certs leaf first, then each issuer in turn (by subject/issuer and key ids);
// certificates that are not part of the leaf's path are appended in their original order.
// leaf must be one of certs.
func OrderChain(leaf *x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{leaf}
	used := map[*x509.Certificate]bool{leaf: true}
	cur := leaf
	for {
		var next *x509.Certificate
		for _, c := range certs {
			if used[c] || c.Equal(cur) {
				continue
			}
			if cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		out = append(out, next)
		used[next] = true
		cur = next
	}
	for _, c := range certs {
		if !used[c] && !c.Equal(leaf) {
			out = append(out, c)
		}
	}
	return out
}
