package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// The builders below write PKCS#12 structures with encoding/asn1 so that one
// count can be set alone. Their ciphertexts and digests are filler: only
// CheckPKCS12Cost reads these files, or Decode when it must refuse them first.

var (
	oidTestSHA1       = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidTestHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidTestAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidTest3DES       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidTestRC2_40     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 6}
	oidTestPBES1DES   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 10} // pbeWithSHA1AndDES-CBC
	oidTestScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidTestCertBag    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidTestSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidTestUnknown    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func raw(der []byte) asn1.RawValue { return asn1.RawValue{FullBytes: der} }

// explicit0 is [0] EXPLICIT around der; encoding/asn1 writes a RawValue as
// it is, ignoring the field's tag.
func explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// pbeAlg is a PKCS#12 PBE or PBES1 algorithm: SEQUENCE{salt, iterations}.
func pbeAlg(t testing.TB, oid asn1.ObjectIdentifier, iter int) pkix.AlgorithmIdentifier {
	p := struct {
		Salt       []byte
		Iterations int
	}{make([]byte, 8), iter}
	return pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: raw(mustMarshal(t, p))}
}

// pbkdf2Alg is PBKDF2 with HMAC-SHA-256, as OpenSSL 3 and go-pkcs12 write it.
func pbkdf2Alg(t testing.TB, iter, keyLen int) pkix.AlgorithmIdentifier {
	p := struct {
		Salt       []byte
		Iterations int
		KeyLength  int `asn1:"optional"`
		PRF        pkix.AlgorithmIdentifier
	}{make([]byte, 16), iter, keyLen, pkix.AlgorithmIdentifier{Algorithm: oidTestHMACSHA256, Parameters: asn1.NullRawValue}}
	return pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: raw(mustMarshal(t, p))}
}

// pbes2Alg is PBES2 with the given KDF and AES-256-CBC.
func pbes2Alg(t testing.TB, kdf pkix.AlgorithmIdentifier) pkix.AlgorithmIdentifier {
	p := struct{ KDF, Enc pkix.AlgorithmIdentifier }{kdf, pkix.AlgorithmIdentifier{Algorithm: oidTestAES256CBC, Parameters: raw(mustMarshal(t, make([]byte, 16)))}}
	return pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: raw(mustMarshal(t, p))}
}

// testMac is MacData; Iterations 1 is left out, as DER wants for a DEFAULT.
type testMac struct {
	Mac        testDigestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type testDigestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

func classicMac(iter int) testMac {
	m := testMac{MacSalt: make([]byte, 20), Iterations: iter}
	m.Mac.Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidTestSHA1, Parameters: asn1.NullRawValue}
	m.Mac.Digest = make([]byte, 20)
	return m
}

// pbmac1Mac is an RFC 9579 MAC; macData.iterations is 1 unless set.
func pbmac1Mac(t testing.TB, kdf pkix.AlgorithmIdentifier, macDataIter int) testMac {
	p := struct{ KDF, MAC pkix.AlgorithmIdentifier }{kdf, pkix.AlgorithmIdentifier{Algorithm: oidTestHMACSHA256, Parameters: asn1.NullRawValue}}
	m := testMac{MacSalt: make([]byte, 16), Iterations: macDataIter}
	m.Mac.Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidPBMAC1, Parameters: raw(mustMarshal(t, p))}
	m.Mac.Digest = make([]byte, 32)
	return m
}

type testBag struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"tag:0,explicit"`
}

// keyBag is a pkcs8ShroudedKeyBag encrypted with alg.
func keyBag(t testing.TB, alg pkix.AlgorithmIdentifier) []byte {
	epki := struct {
		Algorithm pkix.AlgorithmIdentifier
		Data      []byte
	}{alg, make([]byte, 32)}
	return mustMarshal(t, testBag{oidShroudedKeyBag, explicit0(mustMarshal(t, epki))})
}

// certBag is a certBag with a filler certificate.
func certBag(t testing.TB) []byte {
	cb := struct {
		ID   asn1.ObjectIdentifier
		Cert []byte `asn1:"tag:0,explicit"`
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}, []byte("certificate")}
	return mustMarshal(t, testBag{oidTestCertBag, explicit0(mustMarshal(t, cb))})
}

// safeContents is SEQUENCE OF SafeBag.
func safeContents(t testing.TB, bags ...[]byte) []byte {
	var body []byte
	for _, b := range bags {
		body = append(body, b...)
	}
	return mustMarshal(t, asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
}

// certBags is n certBags.
func certBags(t testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = certBag(t)
	}
	return out
}

// nestedBag is a safeContentsBag around bags.
func nestedBag(t testing.TB, bags ...[]byte) []byte {
	return mustMarshal(t, testBag{oidSafeContentsBag, explicit0(safeContents(t, bags...))})
}

type testContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

// dataInfo is a plain ContentInfo holding bags.
func dataInfo(t testing.TB, bags ...[]byte) []byte {
	return mustMarshal(t, testContentInfo{oidPKCS7Data, explicit0(mustMarshal(t, safeContents(t, bags...)))})
}

// encryptedInfo is an encryptedData ContentInfo encrypted with alg.
func encryptedInfo(t testing.TB, alg pkix.AlgorithmIdentifier) []byte {
	ed := struct {
		Version int
		ECI     struct {
			ContentType asn1.ObjectIdentifier
			Algorithm   pkix.AlgorithmIdentifier
			Content     []byte `asn1:"tag:0,optional"`
		}
	}{}
	ed.ECI.ContentType, ed.ECI.Algorithm, ed.ECI.Content = oidPKCS7Data, alg, make([]byte, 32)
	return mustMarshal(t, testContentInfo{oidPKCS7EncryptedData, explicit0(mustMarshal(t, ed))})
}

// buildPFX is a v3 PFX with the given content infos and MacData (nil: none).
func buildPFX(t testing.TB, mac any, infos ...[]byte) []byte {
	var body []byte
	for _, ci := range infos {
		body = append(body, ci...)
	}
	authSafe := mustMarshal(t, asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	pfx := struct {
		Version  int
		AuthSafe testContentInfo
		MacData  asn1.RawValue `asn1:"optional"`
	}{3, testContentInfo{oidPKCS7Data, explicit0(mustMarshal(t, authSafe))}, asn1.RawValue{}}
	if mac != nil {
		pfx.MacData = raw(mustMarshal(t, mac))
	}
	return mustMarshal(t, pfx)
}

// keyVaultShape is what Key Vault serves: a shrouded key in a plain
// SafeContents, the certificates in an encryptedData, a SHA-1 MAC.
func keyVaultShape(t testing.TB, macIter, keyIter, certIter int) []byte {
	return buildPFX(t, classicMac(macIter),
		dataInfo(t, keyBag(t, pbeAlg(t, oidTest3DES, keyIter))),
		encryptedInfo(t, pbeAlg(t, oidTest3DES, certIter)))
}

// TestCheckPKCS12CostStructures sets one count or bound at a time.
func TestCheckPKCS12CostStructures(t *testing.T) {
	t.Parallel()
	const max = MaxPKCS12Iterations
	kv := func(iter int) []byte { return keyVaultShape(t, iter, iter, iter) }
	bags := func(n int) [][]byte { return certBags(t, n) }
	nest := func(depth int) []byte { // a key bag at SafeContents depth depth
		b := keyBag(t, pbeAlg(t, oidTest3DES, 2048))
		for i := 1; i < depth; i++ {
			b = nestedBag(t, b)
		}
		return buildPFX(t, classicMac(2048), dataInfo(t, b))
	}
	infos := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = dataInfo(t, certBag(t))
		}
		return out
	}
	tests := []struct {
		name string
		der  []byte
		msg  string // "" for success, else a substring of the message
	}{
		{"key vault shape at 2000", kv(2000), ""},
		{"all counts at the limit", kv(max), ""},
		{"all counts at 1", kv(1), ""},
		{"MAC iterations left at DEFAULT 1", buildPFX(t, classicMac(1), dataInfo(t, certBag(t))), ""},
		{"no MAC", buildPFX(t, nil, dataInfo(t, certBag(t))), ""},

		{"MAC above the limit", keyVaultShape(t, max+1, 2000, 2000), "MAC iteration count 200001 exceeds the limit of 200000"},
		{"MAC at 2^62", keyVaultShape(t, 1<<62, 2000, 2000), fmt.Sprintf("MAC iteration count %d exceeds", 1<<62)},
		{"MAC at 0", keyVaultShape(t, 0, 2000, 2000), "MAC iteration count 0 is below 1"},
		{"MAC negative", keyVaultShape(t, -5, 2000, 2000), "MAC iteration count -5 is below 1"},
		{"key bag above the limit", keyVaultShape(t, 2000, max+1, 2000), "shrouded key bag #1 iteration count 200001 exceeds"},
		{"key bag at 0", keyVaultShape(t, 2000, 0, 2000), "shrouded key bag #1 iteration count 0 is below 1"},
		{"encrypted content above the limit", keyVaultShape(t, 2000, 2000, 1<<31), "encrypted content info #2 iteration count 2147483648 exceeds"},

		{"PBES2 everywhere at 2048", buildPFX(t, classicMac(2048),
			dataInfo(t, keyBag(t, pbes2Alg(t, pbkdf2Alg(t, 2048, 0)))),
			encryptedInfo(t, pbes2Alg(t, pbkdf2Alg(t, 2048, 0)))), ""},
		{"PBES2 key bag above the limit", buildPFX(t, classicMac(2048),
			dataInfo(t, keyBag(t, pbes2Alg(t, pbkdf2Alg(t, max+1, 0))))), "shrouded key bag #1 iteration count 200001"},
		{"PBES2 encrypted content above the limit", buildPFX(t, classicMac(2048),
			dataInfo(t, certBag(t)), encryptedInfo(t, pbes2Alg(t, pbkdf2Alg(t, 1<<40, 0)))), "encrypted content info #2 iteration count 1099511627776"},
		{"PBES1 key bag above the limit", buildPFX(t, nil,
			dataInfo(t, keyBag(t, pbeAlg(t, oidTestPBES1DES, max+1)))), "shrouded key bag #1 iteration count 200001"},
		{"RC2 encrypted content above the limit", buildPFX(t, nil,
			encryptedInfo(t, pbeAlg(t, oidTestRC2_40, max+1))), "encrypted content info #1 iteration count 200001"},

		{"PBMAC1 at 2048", buildPFX(t, pbmac1Mac(t, pbkdf2Alg(t, 2048, 32), 1), dataInfo(t, certBag(t))), ""},
		{"PBMAC1 above the limit", buildPFX(t, pbmac1Mac(t, pbkdf2Alg(t, max+1, 32), 1), dataInfo(t, certBag(t))), "PBMAC1 MAC iteration count 200001"},
		// RFC 9579: macData.iterations means nothing with PBMAC1; go-pkcs12 ignores it.
		{"PBMAC1 ignores macData iterations", buildPFX(t, pbmac1Mac(t, pbkdf2Alg(t, 2048, 32), 1<<40), dataInfo(t, certBag(t))), ""},

		// go-pkcs12 refuses these before deriving anything, so their counts do not matter.
		{"unknown PBE algorithm", buildPFX(t, nil, dataInfo(t, keyBag(t, pbeAlg(t, oidTestUnknown, 1<<40)))), ""},
		{"PBES2 with scrypt", buildPFX(t, nil, dataInfo(t, keyBag(t, pbes2Alg(t, pkix.AlgorithmIdentifier{Algorithm: oidTestScrypt, Parameters: raw(mustMarshal(t, 1<<40))})))), ""},
		{"signedData authenticated safe", func() []byte {
			der := buildPFX(t, nil)
			var p costPFX
			if _, err := asn1.Unmarshal(der, &p); err != nil {
				t.Fatal(err)
			}
			p.AuthSafe.ContentType = oidTestSignedData
			return mustMarshal(t, p)
		}(), ""},

		{"64 bags", buildPFX(t, nil, dataInfo(t, bags(64)...)), ""},
		{"65 bags", buildPFX(t, nil, dataInfo(t, bags(65)...)), "more than 64 bags"},
		{"65 bags over two SafeContents", buildPFX(t, nil, dataInfo(t, bags(40)...), dataInfo(t, bags(25)...)), "more than 64 bags"},
		{"65 content infos", buildPFX(t, nil, infos(65)...), "more than 64 content infos"},
		{"key bag nested at depth 4", nest(4), ""},
		{"key bag nested at depth 5", nest(5), "nested more than 4 deep"},
		{"nested key bag above the limit", buildPFX(t, nil, dataInfo(t, nestedBag(t, certBag(t), keyBag(t, pbeAlg(t, oidTest3DES, max+1))))), "shrouded key bag #3 iteration count 200001"},

		{"nil", nil, "not valid DER"},
		{"empty sequence", []byte{0x30, 0x00}, "not valid DER"},
		{"BER indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x03, 0x00, 0x00}, "not valid DER"},
		{"text", []byte("hello world"), "not valid DER"},
		{"trailing data", append(kv(2000), 0), "trailing data"},
		{"iteration count wider than 64 bits", func() []byte {
			m := classicMac(2000)
			wide := struct {
				Mac        testDigestInfo
				MacSalt    []byte
				Iterations asn1.RawValue
			}{m.Mac, m.MacSalt, raw([]byte{0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0})}
			return buildPFX(t, wide, dataInfo(t, certBag(t)))
		}(), "not valid DER"},
		{"data content info without an OCTET STRING", buildPFX(t, nil, mustMarshal(t, testContentInfo{oidPKCS7Data, explicit0(mustMarshal(t, 7))})), "does not hold an OCTET STRING"},
		{"key bag with broken PBE parameters", buildPFX(t, nil, dataInfo(t, keyBag(t, pkix.AlgorithmIdentifier{Algorithm: oidTest3DES, Parameters: raw(mustMarshal(t, "salt"))}))), "PBE parameters are not valid DER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckPKCS12Cost(tc.der)
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("CheckPKCS12Cost: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckPKCS12Cost accepted it; want %q", tc.msg)
			}
			checkClass(t, err, ErrMalformed)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q does not mention %q", err, tc.msg)
			}
			if len(tc.der) == 0 {
				return // Decode stops at "empty" first
			}
			// Decode must refuse it the same way, before go-pkcs12 runs.
			_, derr := Decode(ContentTypePKCS12, base64.StdEncoding.EncodeToString(tc.der))
			if derr == nil || !strings.Contains(derr.Error(), err.Error()) {
				t.Errorf("Decode: %v; want it to carry %q", derr, err)
			} else {
				checkClass(t, derr, ErrMalformed)
			}
		})
	}
}

// TestCheckPKCS12CostEncoders accepts what go-pkcs12 writes at its default
// counts, and what vaultcert itself writes for keystore.p12.
func TestCheckPKCS12CostEncoders(t *testing.T) {
	t.Parallel()
	c := newChain(t, algP256)
	encode := func(enc *pkcs12.Encoder) []byte {
		der, err := enc.Encode(c.leaf.key, c.leaf.cert, certs(c.inter, c.root), "")
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	trust, err := pkcs12.LegacyDES.EncodeTrustStore(certs(c.leaf, c.inter), "")
	if err != nil {
		t.Fatal(err)
	}
	keystore, err := (&Bundle{Leaf: c.leaf.cert, Intermediates: certs(c.inter), Root: c.root.cert, Key: c.leaf.key}).PKCS12("changeit", ChainFull)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"LegacyRC2", encode(pkcs12.LegacyRC2)},
		{"LegacyDES", encode(pkcs12.LegacyDES)},
		{"Modern2023", encode(pkcs12.Modern2023)},
		{"Modern2026 (PBMAC1)", encode(pkcs12.Modern2026)},
		{"Passwordless", encode(pkcs12.Passwordless)},
		{"trust store", trust},
		{"keystore.p12", keystore},
	} {
		if err := CheckPKCS12Cost(tc.der); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestPKCS12IterationBound encodes real files one iteration above the bound
// (refused by the check and by Decode, naming the count), at the bound
// (decoded end to end: one KDF at the bound stays cheap) and at the default.
func TestPKCS12IterationBound(t *testing.T) {
	t.Parallel()
	self := selfSigned(t, algP256)
	keySecrets := keyForms(t, self.key)
	over := fmt.Sprintf("iteration count %d exceeds the limit of %d", MaxPKCS12Iterations+1, MaxPKCS12Iterations)
	tests := []struct {
		name string
		enc  *pkcs12.Encoder
		msg  string // "" when Decode must succeed
	}{
		{"LegacyDES default", pkcs12.LegacyDES, ""},
		{"Modern2026 default", pkcs12.Modern2026, ""},
		{"LegacyDES at the bound", pkcs12.LegacyDES.WithIterations(MaxPKCS12Iterations), ""},
		{"LegacyDES above the bound", pkcs12.LegacyDES.WithIterations(MaxPKCS12Iterations + 1), over},
		{"Modern2023 above the bound", pkcs12.Modern2023.WithIterations(MaxPKCS12Iterations + 1), over},
		{"Modern2026 above the bound", pkcs12.Modern2026.WithIterations(MaxPKCS12Iterations + 1), over},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			der, err := tc.enc.Encode(self.key, self.cert, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			value := base64.StdEncoding.EncodeToString(der)
			checkErr := CheckPKCS12Cost(der)
			b, decodeErr := Decode(ContentTypePKCS12, value)
			if tc.msg == "" {
				if checkErr != nil || decodeErr != nil {
					t.Fatalf("CheckPKCS12Cost: %v; Decode: %v", checkErr, decodeErr)
				}
				sameCerts(t, "chain", b.Chain(), certs(self))
				return
			}
			for what, err := range map[string]error{"CheckPKCS12Cost": checkErr, "Decode": decodeErr} {
				if err == nil {
					t.Fatalf("%s accepted %d iterations", what, MaxPKCS12Iterations+1)
				}
				checkClass(t, err, ErrMalformed)
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("%s: message %q does not mention %q", what, err, tc.msg)
				}
				assertNoLeak(t, err, value)
				if w := leaked(err.Error(), keySecrets); w != "" {
					t.Errorf("%s: message repeats key material %q", what, w)
				}
			}
		})
	}
}

// TestCheckPKCS12CostWorkIsBounded shows the walk stops at the bounds: a file
// with thousands of bags or content infos allocates what one just over the
// bound does. Not parallel: AllocsPerRun counts the whole process.
func TestCheckPKCS12CostWorkIsBounded(t *testing.T) {
	allocs := func(der []byte) float64 {
		return testing.AllocsPerRun(10, func() { _ = CheckPKCS12Cost(der) })
	}
	infos := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = dataInfo(t, certBag(t))
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		bound, many []byte
	}{
		{"bags", buildPFX(t, nil, dataInfo(t, certBags(t, maxPKCS12Bags+1)...)), buildPFX(t, nil, dataInfo(t, certBags(t, 10000)...))},
		{"content infos", buildPFX(t, nil, infos(maxPKCS12Bags+1)...), buildPFX(t, nil, infos(5000)...)},
	} {
		// A little slack for the runtime (the race detector allocates too);
		// an unbounded walk would allocate per bag, thousands more.
		if a, b := allocs(tc.bound), allocs(tc.many); b > a+a/10 {
			t.Errorf("%s: %.0f allocations for %d bytes, %.0f just over the bound", tc.name, b, len(tc.many), a)
		}
	}
}

// TestCheckPKCS12CostFindsEveryCount encodes real files with 32768
// iterations (INTEGER 02 03 00 80 00) and raises each count in turn to
// 8388607 in place: the check must refuse every one, so no count go-pkcs12
// reads escapes it, whatever layout the encoder uses.
func TestCheckPKCS12CostFindsEveryCount(t *testing.T) {
	t.Parallel()
	self := selfSigned(t, algP256)
	count, raised := []byte{0x02, 0x03, 0x00, 0x80, 0x00}, []byte{0x02, 0x03, 0x7f, 0xff, 0xff}
	tests := []struct {
		name   string
		enc    *pkcs12.Encoder
		fields []string // in file order
	}{
		{"LegacyDES", pkcs12.LegacyDES, []string{"encrypted content info #1", "shrouded key bag #1", "MAC"}},
		{"Modern2023", pkcs12.Modern2023, []string{"encrypted content info #1", "shrouded key bag #1", "MAC"}},
		{"Modern2026", pkcs12.Modern2026, []string{"encrypted content info #1", "shrouded key bag #1", "PBMAC1 MAC"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var der []byte
			// Random salts or ciphertext could hold the pattern too; encode again then.
			for try := 0; try < 5 && strings.Count(string(der), string(count)) != len(tc.fields); try++ {
				var err error
				if der, err = tc.enc.WithIterations(0x8000).Encode(self.key, self.cert, nil, ""); err != nil {
					t.Fatal(err)
				}
			}
			if n := strings.Count(string(der), string(count)); n != len(tc.fields) {
				t.Fatalf("%d iteration counts in the file, want %d", n, len(tc.fields))
			}
			if err := CheckPKCS12Cost(der); err != nil {
				t.Fatalf("CheckPKCS12Cost at 32768: %v", err)
			}
			at := 0
			for _, field := range tc.fields {
				at += strings.Index(string(der[at:]), string(count))
				patched := append([]byte(nil), der...)
				copy(patched[at:], raised)
				at += len(count)
				err := CheckPKCS12Cost(patched)
				want := "PKCS#12 " + field + " iteration count 8388607 exceeds"
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s raised: %v; want %q", field, err, want)
				}
			}
		})
	}
}

// TestCheckPKCS12CostTruncated cuts a real PFX at every length.
func TestCheckPKCS12CostTruncated(t *testing.T) {
	t.Parallel()
	self := selfSigned(t, algP256)
	der, err := pkcs12.LegacyDES.Encode(self.key, self.cert, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(der) {
		err := CheckPKCS12Cost(der[:n])
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d of %d bytes: %v, want ErrMalformed", n, len(der), err)
		}
	}
}

// FuzzCheckPKCS12Cost feeds arbitrary DER to the cost check alone. It must
// not panic, and fail only with ErrMalformed and a short message (it walks
// the structure, never echoes it).
func FuzzCheckPKCS12Cost(f *testing.F) {
	self := selfSigned(f, algP256)
	for _, enc := range []*pkcs12.Encoder{pkcs12.LegacyDES, pkcs12.Modern2023, pkcs12.Modern2026, pkcs12.Passwordless} {
		der, err := enc.Encode(self.key, self.cert, nil, "")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add(keyVaultShape(f, 2000, 2000, 2000))
	f.Add(buildPFX(f, pbmac1Mac(f, pbkdf2Alg(f, 2048, 32), 1),
		dataInfo(f, certBag(f), nestedBag(f, keyBag(f, pbes2Alg(f, pbkdf2Alg(f, 2048, 0))))),
		encryptedInfo(f, pbeAlg(f, oidTestPBES1DES, 2048))))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, der []byte) {
		err := CheckPKCS12Cost(der)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("unclassified error: %v", err)
		}
		if n := len(err.Error()); n > 1024 {
			t.Fatalf("message of %d bytes", n)
		}
	})
}

// TestPKCS12BuildersReachKDF shows the hand-built files are read by go-pkcs12
// up to its key derivation (they fail at decryption or the MAC, not before),
// so the counts the check refuses in them are counts go-pkcs12 would use.
func TestPKCS12BuildersReachKDF(t *testing.T) {
	t.Parallel()
	for name, der := range map[string][]byte{
		"MAC":                  keyVaultShape(t, 2000, 2000, 2000),
		"PBMAC1":               buildPFX(t, pbmac1Mac(t, pbkdf2Alg(t, 2048, 32), 1), dataInfo(t, certBag(t))),
		"encrypted content":    buildPFX(t, nil, encryptedInfo(t, pbeAlg(t, oidTest3DES, 2000))),
		"PBES2 encrypted data": buildPFX(t, nil, encryptedInfo(t, pbes2Alg(t, pbkdf2Alg(t, 2048, 0)))),
		"key bag":              buildPFX(t, nil, dataInfo(t, keyBag(t, pbeAlg(t, oidTest3DES, 2000)), certBag(t))),
		"PBES2 key bag":        buildPFX(t, nil, dataInfo(t, keyBag(t, pbes2Alg(t, pbkdf2Alg(t, 2048, 0))))),
	} {
		if err := CheckPKCS12Cost(der); err != nil {
			t.Errorf("%s: CheckPKCS12Cost: %v", name, err)
		}
		_, _, _, err := pkcs12.DecodeChain(der, "")
		if err == nil || !strings.Contains(err.Error(), "pkcs12: decryption") {
			t.Errorf("%s: go-pkcs12 says %v; want a decryption or MAC failure", name, err)
		}
	}
}

// TestDecoderBoundsEveryDerivation: go-pkcs12 itself (the copy in internal/third_party, with its iteration bound)
// refuses each absurd count before deriving anything, even where CheckPKCS12Cost is not consulted. That is what
// covers a key bag hidden inside encrypted content, which no pre-check can see: its derivation takes the same
// path as the visible key bags below.
func TestDecoderBoundsEveryDerivation(t *testing.T) {
	t.Parallel()
	const huge = 1 << 40 // hours of key derivation without the bound
	for name, der := range map[string][]byte{
		"MAC":                  keyVaultShape(t, huge, 2000, 2000),
		"PBMAC1":               buildPFX(t, pbmac1Mac(t, pbkdf2Alg(t, huge, 32), 1), dataInfo(t, certBag(t))),
		"encrypted content":    buildPFX(t, nil, encryptedInfo(t, pbeAlg(t, oidTest3DES, huge))),
		"PBES2 encrypted data": buildPFX(t, nil, encryptedInfo(t, pbes2Alg(t, pbkdf2Alg(t, huge, 0)))),
		"key bag":              buildPFX(t, nil, dataInfo(t, keyBag(t, pbeAlg(t, oidTest3DES, huge)), certBag(t))),
		"PBES2 key bag":        buildPFX(t, nil, dataInfo(t, keyBag(t, pbes2Alg(t, pbkdf2Alg(t, huge, 0))))),
	} {
		_, _, _, err := pkcs12.DecodeChain(der, "")
		if err == nil || !strings.Contains(err.Error(), "iteration count 1099511627776 is outside") {
			t.Errorf("%s: go-pkcs12 says %v; want the iteration bound", name, err)
		}
		if _, _, err := DecodeClientPFX(der); err == nil {
			t.Errorf("%s: DecodeClientPFX accepted it", name)
		}
	}
}
