// vaultcert: this file is the only addition to go-pkcs12 v0.7.4 (see README.vaultcert.md).

package pkcs12

import (
	"crypto/x509/pkix"
	"fmt"
)

// MaxIterations bounds the iteration count of every key derivation the decoder runs (MAC, encrypted contents,
// shrouded key bags, PBMAC1). Real files use 1 to 10,000; an attacker-chosen count near 2^63 would pin a CPU
// for ever, and a count hidden in a bag inside encrypted content cannot be seen before decryption, so the
// bound has to live here, where each derivation of the decoder starts. Encoding is not bounded.
const MaxIterations = 200000

// checkIterations refuses a count outside [1, MaxIterations] before any derivation runs.
func checkIterations(n int) error {
	if n < 1 || n > MaxIterations {
		return fmt.Errorf("pkcs12: iteration count %d is outside 1..%d", n, MaxIterations)
	}
	return nil
}

// checkDecryptIterations checks the count of a PBES1 or PBES2 algorithm about to decrypt. Parameters it cannot
// parse are left to the decoder, which reports them.
func checkDecryptIterations(algorithm pkix.AlgorithmIdentifier) error {
	if algorithm.Algorithm.Equal(oidPBES2) {
		var params pbes2Params
		if err := unmarshal(algorithm.Parameters.FullBytes, &params); err != nil {
			return nil
		}
		var kdf pbkdf2Params
		if err := unmarshal(params.Kdf.Parameters.FullBytes, &kdf); err != nil {
			return nil
		}
		return checkIterations(kdf.Iterations)
	}
	var params pbeParams
	if err := unmarshal(algorithm.Parameters.FullBytes, &params); err != nil {
		return nil
	}
	return checkIterations(params.Iterations)
}

// checkMacIterations checks the count of a MAC about to be verified (PBMAC1's in its own parameters).
func checkMacIterations(m *macData) error {
	if !m.Mac.Algorithm.Algorithm.Equal(oidPBMAC1) {
		return checkIterations(m.Iterations)
	}
	var params pbmac1Params
	if err := unmarshal(m.Mac.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil
	}
	var kdf pbkdf2Params
	if err := unmarshal(params.Kdf.Parameters.FullBytes, &kdf); err != nil {
		return nil
	}
	return checkIterations(kdf.Iterations)
}
