package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// MaxPKCS12Iterations is the largest KDF iteration count CheckPKCS12Cost
// accepts for a PKCS#12 MAC, encrypted SafeContents or shrouded key bag.
// Key Vault, OpenSSL, Windows, .NET and Java write 2000 to 10000; at this
// bound one key derivation still takes well under a second, while the
// INTEGER itself could ask for 2^63 rounds.
const MaxPKCS12Iterations = 200000

const (
	// maxPKCS12Bags bounds the ContentInfos of the authenticated safe and,
	// separately, the SafeBags that can be read without decrypting. A Key
	// Vault PFX holds the chain and one key, so ten would do.
	maxPKCS12Bags = 64
	// maxPKCS12Nesting bounds SafeContents nested in safeContentsBags;
	// depth 1 is a SafeContents of the authenticated safe. go-pkcs12 does
	// not read nested bags at all, so real files never need more.
	maxPKCS12Nesting = 4
)

// OIDs the cost check looks at (RFC 7292, RFC 8018, RFC 9579).
var (
	oidPKCS7Data          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidPKCS7EncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidShroudedKeyBag     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidSafeContentsBag    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 6}
	oidPKCS12PBE          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1} // pbeWithSHAAnd*: arcs 1 to 6
	oidPKCS5              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5}     // PBES1 arcs 1, 3, 4, 6, 10, 11
	oidPBKDF2             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBES2              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBMAC1             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
)

// The structures below have the shapes go-pkcs12 v0.7.4 unmarshals, field
// for field up to the last one read, so both read the same iteration counts
// from the same bytes. Trailing fields are left out (encoding/asn1 allows
// extra SEQUENCE elements) and octet strings are RawValues, which refer to
// the input instead of copying it.
type (
	// PFX ::= SEQUENCE { version INTEGER, authSafe ContentInfo, macData MacData OPTIONAL }
	costPFX struct {
		Version  int
		AuthSafe costContentInfo
		MacData  costMacData `asn1:"optional"`
	}
	costContentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
	}
	// MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }
	costMacData struct {
		Mac struct {
			Algorithm pkix.AlgorithmIdentifier
			Digest    asn1.RawValue
		}
		MacSalt    asn1.RawValue
		Iterations int `asn1:"optional,default:1"`
	}
	// EncryptedData ::= SEQUENCE { version INTEGER, encryptedContentInfo SEQUENCE { contentType, algorithm, ... } }
	costEncryptedData struct {
		Version              int
		EncryptedContentInfo struct {
			ContentType asn1.ObjectIdentifier
			Algorithm   pkix.AlgorithmIdentifier
		}
	}
	// SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY, bagAttributes SET OPTIONAL }
	// An EXPLICIT RawValue is the [0] element itself: its Bytes are the inner
	// element whole, which is what go-pkcs12 unmarshals.
	costSafeBag struct {
		ID    asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"tag:0,explicit"`
	}
	// EncryptedPrivateKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, encryptedData OCTET STRING }
	costEncryptedKey struct {
		Algorithm pkix.AlgorithmIdentifier
	}
	// PBEParameter (PBES1) and pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER }
	costPBEParams struct {
		Salt       asn1.RawValue
		Iterations int
	}
	// PBES2-params and PBMAC1-params both start with the KDF's AlgorithmIdentifier.
	costKDFFirst struct {
		KDF pkix.AlgorithmIdentifier
	}
	// PBKDF2-params ::= SEQUENCE { salt CHOICE, iterationCount INTEGER, keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT }
	costPBKDF2Params struct {
		Salt       asn1.RawValue
		Iterations int
	}
)

// CheckPKCS12Cost bounds the work decoding the PKCS#12 (PFX) file der can
// cost, so callers run it before go-pkcs12, which derives keys with whatever
// iteration count the file names. It is a pre-check, not a decoder: it reads
// only the ASN.1 on the way to each KDF parameter set, namely the MacData
// (macData.iterations whatever the digest, or PBMAC1's PBKDF2 count), the
// algorithm of every encryptedData in the authenticated safe, and that of
// every pkcs8ShroudedKeyBag in a plain SafeContents, for the PKCS#12 PBE,
// PBES1 and PBES2/PBKDF2 schemes. Other algorithms are left to go-pkcs12,
// which refuses them without deriving a key.
//
// It fails when an iteration count is above MaxPKCS12Iterations or below 1,
// when the authenticated safe or the readable SafeContents hold more than 64
// entries, when SafeContents nest more than 4 deep, or when the structure on
// that path is not DER. It neither decrypts nor checks the MAC, so bags
// inside an encryptedData are out of its sight: a shrouded key bag in there
// (which Key Vault, OpenSSL, Windows and Java do not write) stays unbounded.
// Errors wrap ErrMalformed and name the field and the count, never input bytes.
func CheckPKCS12Cost(der []byte) error {
	var pfx costPFX
	if err := unmarshalAll(der, &pfx); err != nil {
		return errorf(ErrMalformed, "the PKCS#12 (PFX) structure is not valid DER: %v", err)
	}
	if err := checkMacCost(&pfx.MacData); err != nil {
		return err
	}
	if !pfx.AuthSafe.ContentType.Equal(oidPKCS7Data) {
		return nil // public-key integrity mode: go-pkcs12 refuses it before any KDF
	}
	// go-pkcs12 reads the [0] content as any element and uses its contents,
	// so the check does too rather than insisting on an OCTET STRING.
	var authSafe asn1.RawValue
	if err := unmarshalAll(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return errorf(ErrMalformed, "the PKCS#12 authenticated safe is not valid DER: %v", err)
	}
	infos, err := sequenceOf(authSafe.Bytes, "the PKCS#12 authenticated safe")
	if err != nil {
		return err
	}
	bags := 0
	for n := 1; len(infos) > 0; n++ {
		if n > maxPKCS12Bags {
			return errorf(ErrMalformed, "the PKCS#12 authenticated safe holds more than %d content infos", maxPKCS12Bags)
		}
		var ci costContentInfo
		if infos, err = asn1.Unmarshal(infos, &ci); err != nil {
			return errorf(ErrMalformed, "the PKCS#12 content info #%d is not valid DER: %v", n, err)
		}
		switch {
		case ci.ContentType.Equal(oidPKCS7Data):
			var data asn1.RawValue
			if err := unmarshalAll(ci.Content.Bytes, &data); err != nil || !isOctetString(data) {
				return errorf(ErrMalformed, "the PKCS#12 content info #%d (data) does not hold an OCTET STRING", n)
			}
			if err := checkSafeContents(data.Bytes, 1, &bags); err != nil {
				return err
			}
		case ci.ContentType.Equal(oidPKCS7EncryptedData):
			var ed costEncryptedData
			if err := unmarshalAll(ci.Content.Bytes, &ed); err != nil {
				return errorf(ErrMalformed, "the PKCS#12 content info #%d (encryptedData) is not valid DER: %v", n, err)
			}
			if err := checkPBECost(ed.EncryptedContentInfo.Algorithm, fmt.Sprintf("encrypted content info #%d", n)); err != nil {
				return err
			}
		}
		// Other content types: go-pkcs12 refuses them before any KDF.
	}
	return nil
}

// checkMacCost bounds the MAC key derivation. PBMAC1 takes its count from
// its PBKDF2 parameters and ignores macData.iterations (RFC 9579).
func checkMacCost(m *costMacData) error {
	switch {
	case len(m.Mac.Algorithm.Algorithm) == 0:
		return nil // no MacData: nothing to derive
	case m.Mac.Algorithm.Algorithm.Equal(oidPBMAC1):
		var p costKDFFirst
		if err := unmarshalAll(m.Mac.Algorithm.Parameters.FullBytes, &p); err != nil {
			return errorf(ErrMalformed, "the PKCS#12 PBMAC1 parameters are not valid DER: %v", err)
		}
		return checkKDFCost(p.KDF, "PBMAC1 MAC")
	default:
		return checkIterations(m.Iterations, "MAC")
	}
}

// checkSafeContents walks one plain SafeContents at nesting depth, counting
// bags into *bags (so messages number them across the file, in order) and
// checking shrouded key bags and nested SafeContents.
func checkSafeContents(der []byte, depth int, bags *int) error {
	if depth > maxPKCS12Nesting {
		return errorf(ErrMalformed, "the PKCS#12 SafeContents are nested more than %d deep", maxPKCS12Nesting)
	}
	rest, err := sequenceOf(der, "a PKCS#12 SafeContents")
	if err != nil {
		return err
	}
	for len(rest) > 0 {
		if *bags >= maxPKCS12Bags {
			return errorf(ErrMalformed, "the PKCS#12 file holds more than %d bags", maxPKCS12Bags)
		}
		*bags++
		n := *bags
		var bag costSafeBag
		if rest, err = asn1.Unmarshal(rest, &bag); err != nil {
			return errorf(ErrMalformed, "the PKCS#12 bag #%d is not valid DER: %v", n, err)
		}
		switch {
		case bag.ID.Equal(oidShroudedKeyBag):
			var k costEncryptedKey
			if err := unmarshalAll(bag.Value.Bytes, &k); err != nil {
				return errorf(ErrMalformed, "the PKCS#12 shrouded key bag #%d is not valid DER: %v", n, err)
			}
			if err := checkPBECost(k.Algorithm, fmt.Sprintf("shrouded key bag #%d", n)); err != nil {
				return err
			}
		case bag.ID.Equal(oidSafeContentsBag):
			if err := checkSafeContents(bag.Value.Bytes, depth+1, bags); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPBECost bounds the key derivation of a password-based encryption
// algorithm; field names where it was found.
func checkPBECost(alg pkix.AlgorithmIdentifier, field string) error {
	switch {
	case isPKCS12PBE(alg.Algorithm) || isPBES1(alg.Algorithm):
		var p costPBEParams
		if err := unmarshalAll(alg.Parameters.FullBytes, &p); err != nil {
			return errorf(ErrMalformed, "the PKCS#12 %s PBE parameters are not valid DER: %v", field, err)
		}
		return checkIterations(p.Iterations, field)
	case alg.Algorithm.Equal(oidPBES2):
		var p costKDFFirst
		if err := unmarshalAll(alg.Parameters.FullBytes, &p); err != nil {
			return errorf(ErrMalformed, "the PKCS#12 %s PBES2 parameters are not valid DER: %v", field, err)
		}
		return checkKDFCost(p.KDF, field)
	}
	return nil
}

// checkKDFCost bounds a PBES2 or PBMAC1 key derivation function; only PBKDF2
// has a known cost (go-pkcs12 refuses other KDFs).
func checkKDFCost(kdf pkix.AlgorithmIdentifier, field string) error {
	if !kdf.Algorithm.Equal(oidPBKDF2) {
		return nil
	}
	var p costPBKDF2Params
	if err := unmarshalAll(kdf.Parameters.FullBytes, &p); err != nil {
		return errorf(ErrMalformed, "the PKCS#12 %s PBKDF2 parameters are not valid DER: %v", field, err)
	}
	return checkIterations(p.Iterations, field)
}

// checkIterations is the bound itself.
func checkIterations(n int, field string) error {
	switch {
	case n > MaxPKCS12Iterations:
		return errorf(ErrMalformed, "the PKCS#12 %s iteration count %d exceeds the limit of %d (common tools use 2000 to 10000; export the file again with fewer iterations)", field, n, MaxPKCS12Iterations)
	case n < 1:
		return errorf(ErrMalformed, "the PKCS#12 %s iteration count %d is below 1", field, n)
	}
	return nil
}

// isPKCS12PBE reports the pbeWithSHAAnd* family of RFC 7292 appendix C.
func isPKCS12PBE(oid asn1.ObjectIdentifier) bool {
	return len(oid) == len(oidPKCS12PBE)+1 && hasPrefix(oid, oidPKCS12PBE) && oid[len(oid)-1] >= 1 && oid[len(oid)-1] <= 6
}

// isPBES1 reports the PBES1 schemes of RFC 8018 appendix A.3.
func isPBES1(oid asn1.ObjectIdentifier) bool {
	if len(oid) != len(oidPKCS5)+1 || !hasPrefix(oid, oidPKCS5) {
		return false
	}
	switch oid[len(oid)-1] {
	case 1, 3, 4, 6, 10, 11:
		return true
	}
	return false
}

func hasPrefix(oid, prefix asn1.ObjectIdentifier) bool {
	return len(oid) >= len(prefix) && oid[:len(prefix)].Equal(prefix)
}

// sequenceOf returns the contents of the DER SEQUENCE that is all of der,
// for the caller to walk element by element: unmarshalling into a slice
// would allocate for every element before any bound applies.
func sequenceOf(der []byte, what string) ([]byte, error) {
	var seq asn1.RawValue
	if err := unmarshalAll(der, &seq); err != nil {
		return nil, errorf(ErrMalformed, "%s is not valid DER: %v", what, err)
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, errorf(ErrMalformed, "%s is not a SEQUENCE", what)
	}
	return seq.Bytes, nil
}

func isOctetString(v asn1.RawValue) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString && !v.IsCompound
}

// unmarshalAll is asn1.Unmarshal refusing trailing bytes, as go-pkcs12 does.
func unmarshalAll(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err == nil && len(rest) > 0 {
		err = errTrailingData
	}
	return err
}

var errTrailingData = asn1.SyntaxError{Msg: "trailing data"}
