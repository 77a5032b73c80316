package eventgrid

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
)

// oidcMetadataURL is where a tenant's OIDC metadata is: {authority}/{tenant}/v2.0/.well-known/openid-configuration.
func oidcMetadataURL(authorityHost, tenant string) (string, error) {
	u, err := url.Parse(authorityHost)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", errors.New("eventgrid: Entra AuthorityHost must be an https URL")
	}
	return strings.TrimSuffix(authorityHost, "/") + "/" + tenant + "/v2.0/.well-known/openid-configuration", nil
}

// fetch reads the tenant's OIDC metadata, then the key set it names.
func (v *tokenValidator) fetch(ctx context.Context) (map[string]crypto.PublicKey, []string, error) {
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, v.metadataURL, &meta); err != nil {
		return nil, nil, err
	}
	iss, err := url.Parse(meta.Issuer)
	if err != nil || iss.Scheme != "https" || len(meta.Issuer) > maxSourceLen {
		return nil, nil, errors.New("the OIDC metadata has no https issuer")
	}
	if u, err := url.Parse(meta.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, errors.New("the OIDC metadata has no https jwks_uri")
	}
	var set jwkSet
	if err := v.getJSON(ctx, meta.JWKSURI, &set); err != nil {
		return nil, nil, err
	}
	keys := set.publicKeys()
	if len(keys) == 0 {
		return nil, nil, errors.New("the key set has no usable RS256 or ES256 signing key")
	}
	issuers := v.opts.Issuers
	if len(issuers) == 0 {
		// The v2 issuer is https://{host}/{tenant ID}/v2.0; v1 tokens of the same tenant name sts.windows.net.
		tid, _, _ := strings.Cut(strings.TrimPrefix(iss.Path, "/"), "/")
		issuers = []string{meta.Issuer}
		if tid != "" {
			issuers = append(issuers, "https://sts.windows.net/"+tid+"/")
		}
	}
	return keys, issuers, nil
}

// getJSON GETs an https URL and decodes a JSON answer of at most MaxFetchBytes.
func (v *tokenValidator) getJSON(ctx context.Context, rawURL string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("GET %.200s: %w", rawURL, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %.200s: %w", rawURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %.200s: status %d", rawURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, v.opts.MaxFetchBytes+1))
	switch {
	case err != nil:
		return fmt.Errorf("GET %.200s: %w", rawURL, err)
	case int64(len(body)) > v.opts.MaxFetchBytes:
		return fmt.Errorf("GET %.200s: answer larger than %d bytes", rawURL, v.opts.MaxFetchBytes)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %.200s: answer is not the expected JSON", rawURL)
	}
	return nil
}

// jwkSet is a JSON Web Key Set (RFC 7517) as Entra publishes it. Each key is decoded in two steps, the common
// members first, then those of its type.
type jwkSet struct {
	Keys []json.RawMessage `json:"keys"`
}

// jwkCommon holds the members every key has.
type jwkCommon struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// jwkRSA holds an RSA key's modulus and exponent.
type jwkRSA struct {
	N string `json:"n"`
	E string `json:"e"`
}

// jwkEC holds an elliptic-curve key's curve and point.
type jwkEC struct {
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// publicKeys returns the RS256 and ES256 signing keys of the set by kid. Keys without a kid, for encryption, of
// other algorithms or that do not parse are skipped; so are keys beyond maxKeys.
func (s jwkSet) publicKeys() map[string]crypto.PublicKey {
	keys := map[string]crypto.PublicKey{}
	for _, raw := range s.Keys {
		if len(keys) == maxKeys {
			break
		}
		var c jwkCommon
		if json.Unmarshal(raw, &c) != nil || c.Kid == "" || len(c.Kid) > maxKidLen || (c.Use != "" && c.Use != "sig") || keys[c.Kid] != nil {
			continue
		}
		var pub crypto.PublicKey
		switch {
		case c.Kty == "RSA" && (c.Alg == "" || c.Alg == "RS256"):
			var k jwkRSA
			if json.Unmarshal(raw, &k) == nil {
				pub = rsaKey(k.N, k.E)
			}
		case c.Kty == "EC" && (c.Alg == "" || c.Alg == "ES256"):
			var k jwkEC
			if json.Unmarshal(raw, &k) == nil && k.Crv == "P-256" {
				pub = p256Key(k.X, k.Y)
			}
		}
		if pub != nil {
			keys[c.Kid] = pub
		}
	}
	return keys
}

// rsaKey builds an RSA public key of 2048 to 8192 bits, or returns nil.
func rsaKey(n, e string) crypto.PublicKey {
	nb, eb := b64(n), b64(e)
	if len(nb) < 256 || len(nb) > 1024 || len(eb) == 0 || len(eb) > 4 {
		return nil
	}
	exp := new(big.Int).SetBytes(eb).Int64()
	if exp < 3 || exp%2 == 0 {
		return nil
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: int(exp)}
	if key.N.BitLen() < 2048 {
		return nil
	}
	return key
}

// p256Key builds a P-256 public key, checking the point is on the curve, or returns nil.
func p256Key(x, y string) crypto.PublicKey {
	xb, yb := b64(x), b64(y)
	if len(xb) == 0 || len(xb) > 32 || len(yb) == 0 || len(yb) > 32 {
		return nil
	}
	point := make([]byte, 65)
	point[0] = 4 // uncompressed
	copy(point[33-len(xb):33], xb)
	copy(point[65-len(yb):], yb)
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil
	}
	return key
}

// b64 decodes base64url with or without padding; nil when it is not base64url.
func b64(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil
	}
	return b
}
