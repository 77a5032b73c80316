package keyvault

import (
	"context"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
)

// Key Vault's limits on the tags of one certificate version (documented for every Key Vault object).
const (
	// MaxTags is the most tags one version may carry.
	MaxTags = 15
	// MaxTagNameLen is the longest tag name, in characters.
	MaxTagNameLen = 512
	// MaxTagValueLen is the longest tag value, in characters.
	MaxTagValueLen = 256
)

// ValidateTags checks tags against Key Vault's limits, so that a request is not refused with a 400.
func ValidateTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("%d tags, Key Vault allows at most %d per version", len(tags), MaxTags)
	}
	for k, v := range tags {
		if k == "" || len([]rune(k)) > MaxTagNameLen {
			return fmt.Errorf("tag name %.40q... must have 1 to %d characters", k, MaxTagNameLen)
		}
		if len([]rune(v)) > MaxTagValueLen {
			return fmt.Errorf("the value of tag %q is longer than %d characters", k, MaxTagValueLen)
		}
	}
	return nil
}

// CreateCertificate implements Client: it starts issuing a new version with policy p (the first version
// when the certificate does not exist), tagged with tags (Key Vault keeps tags per version). Key Vault answers
// 409 Conflict while another operation is pending, and 409 ObjectIsDeletedButRecoverable when the name is
// soft-deleted.
func (c *azureClient) CreateCertificate(ctx context.Context, name string, p Policy, tags map[string]string) (*Operation, error) {
	if err := ValidateTags(tags); err != nil {
		return nil, fmt.Errorf("Key Vault CreateCertificate %s: %w", name, err)
	}
	return c.createCertificate(ctx, name, p, tags)
}

func (c *azureClient) createCertificate(ctx context.Context, name string, p Policy, tags map[string]string) (*Operation, error) {
	const op = "CreateCertificate"
	if name == "" {
		return nil, fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	var raw *http.Response
	resp, err := c.certs.CreateCertificate(runtime.WithCaptureResponse(ctx, &raw), name,
		azcertificates.CreateCertificateParameters{CertificatePolicy: toSDKPolicy(p), Tags: sdkTags(tags)}, nil)
	if err != nil {
		return nil, c.classify(op, err)
	}
	return mapOperation(resp.CertificateOperation, raw), nil
}

// SetCertificateTags implements Client: a PATCH of the version with only tags, so its attributes and the
// policy are left alone.
func (c *azureClient) SetCertificateTags(ctx context.Context, name, version string, tags map[string]string) error {
	const op = "UpdateCertificate"
	if name == "" {
		return fmt.Errorf("Key Vault %s: empty certificate name", op)
	}
	if err := ValidateTags(tags); err != nil {
		return fmt.Errorf("Key Vault %s %s: %w", op, name, err)
	}
	t := sdkTags(tags)
	if t == nil {
		t = map[string]*string{} // an empty object clears the tags; nil would leave them
	}
	if _, err := c.certs.UpdateCertificate(ctx, name, version, azcertificates.UpdateCertificateParameters{Tags: t}, nil); err != nil {
		return c.classify(op, err)
	}
	return nil
}

// sdkTags maps tags to the SDK's pointer map; nil for none.
func sdkTags(in map[string]string) map[string]*string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]*string, len(in))
	for k, v := range in {
		out[k] = to.Ptr(v)
	}
	return out
}
