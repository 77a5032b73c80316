package fakevault

import "time"

// JSON shapes of the Key Vault REST API (see KEYVAULT.md). Pointers distinguish "absent"
// from zero values when decoding requests; encoders always fill what the service sends.

type wireAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         *int64 `json:"created,omitempty"`
	Updated         *int64 `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays *int   `json:"recoverableDays,omitempty"`
}

type wireKeyProps struct {
	Exportable *bool  `json:"exportable,omitempty"`
	Kty        string `json:"kty,omitempty"`
	KeySize    *int   `json:"key_size,omitempty"`
	ReuseKey   *bool  `json:"reuse_key,omitempty"`
	Crv        string `json:"crv,omitempty"`
}

type wireSecretProps struct {
	ContentType string `json:"contentType,omitempty"`
}

type wireSans struct {
	DNSNames    []string `json:"dns_names,omitempty"`
	Emails      []string `json:"emails,omitempty"`
	UPNs        []string `json:"upns,omitempty"`
	URIs        []string `json:"uris,omitempty"`
	IPAddresses []string `json:"ipAddresses,omitempty"`
}

type wireBasicConstraints struct {
	CA bool `json:"ca"`
}

type wireX509Props struct {
	Subject          string                `json:"subject,omitempty"`
	Sans             *wireSans             `json:"sans,omitempty"`
	Ekus             []string              `json:"ekus"`
	KeyUsage         []string              `json:"key_usage"`
	ValidityMonths   *int                  `json:"validity_months,omitempty"`
	BasicConstraints *wireBasicConstraints `json:"basic_constraints,omitempty"`
}

type wireTrigger struct {
	LifetimePercentage *int `json:"lifetime_percentage,omitempty"`
	DaysBeforeExpiry   *int `json:"days_before_expiry,omitempty"`
}

type wireAction struct {
	ActionType string `json:"action_type"`
}

type wireLifetimeAction struct {
	Trigger wireTrigger `json:"trigger"`
	Action  wireAction  `json:"action"`
}

type wireIssuer struct {
	Name             string `json:"name,omitempty"`
	Cty              string `json:"cty,omitempty"`
	CertTransparency *bool  `json:"cert_transparency,omitempty"`
}

type wirePolicy struct {
	ID              string               `json:"id,omitempty"`
	KeyProps        *wireKeyProps        `json:"key_props,omitempty"`
	SecretProps     *wireSecretProps     `json:"secret_props,omitempty"`
	X509Props       *wireX509Props       `json:"x509_props,omitempty"`
	LifetimeActions []wireLifetimeAction `json:"lifetime_actions,omitempty"`
	Issuer          *wireIssuer          `json:"issuer,omitempty"`
	Attributes      *wireAttributes      `json:"attributes,omitempty"`
}

type wirePendingRef struct {
	ID string `json:"id"`
}

// wireDeleted is what a deleted certificate's bundle or list item adds; embedded first, its fields are
// encoded first, as the service sends them.
type wireDeleted struct {
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        *int64 `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64 `json:"scheduledPurgeDate,omitempty"`
}

type wireBundle struct {
	wireDeleted
	ID                string            `json:"id"`
	KID               string            `json:"kid,omitempty"`
	SID               string            `json:"sid,omitempty"`
	X5T               string            `json:"x5t,omitempty"`
	CER               string            `json:"cer,omitempty"`
	Attributes        *wireAttributes   `json:"attributes"`
	Tags              map[string]string `json:"tags,omitempty"`
	Policy            *wirePolicy       `json:"policy,omitempty"`
	Pending           *wirePendingRef   `json:"pending,omitempty"`
	PreserveCertOrder *bool             `json:"preserveCertOrder,omitempty"`
}

type wireItem struct {
	wireDeleted
	ID         string            `json:"id"`
	X5T        string            `json:"x5t,omitempty"`
	Attributes *wireAttributes   `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Subject    *string           `json:"subject,omitempty"`
}

type wirePage[T any] struct {
	Value    []T     `json:"value"`
	NextLink *string `json:"nextLink"`
}

type wireOperation struct {
	ID                    string      `json:"id"`
	Issuer                *wireIssuer `json:"issuer"`
	CSR                   string      `json:"csr,omitempty"`
	CancellationRequested bool        `json:"cancellation_requested"`
	Status                string      `json:"status"`
	StatusDetails         string      `json:"status_details,omitempty"`
	Error                 *wireError  `json:"error,omitempty"`
	Target                string      `json:"target,omitempty"`
	PreserveCertOrder     *bool       `json:"preserveCertOrder,omitempty"`
	RequestID             string      `json:"request_id"`
}

type wireSecret struct {
	Value       string            `json:"value"`
	ContentType string            `json:"contentType,omitempty"`
	ID          string            `json:"id"`
	Managed     bool              `json:"managed,omitempty"`
	Attributes  *wireAttributes   `json:"attributes"`
	Tags        map[string]string `json:"tags,omitempty"`
	KID         string            `json:"kid,omitempty"`
}

// Request bodies.

type wireCreateRequest struct {
	Policy            *wirePolicy       `json:"policy"`
	Attributes        *wireAttributes   `json:"attributes"`
	Tags              map[string]string `json:"tags"`
	PreserveCertOrder *bool             `json:"preserveCertOrder"`
}

type wireImportRequest struct {
	Value             string            `json:"value"`
	Pwd               string            `json:"pwd"`
	Policy            *wirePolicy       `json:"policy"`
	Attributes        *wireAttributes   `json:"attributes"`
	Tags              map[string]string `json:"tags"`
	PreserveCertOrder *bool             `json:"preserveCertOrder"`
}

type wireUpdateRequest struct {
	Policy     *wirePolicy        `json:"policy"`
	Attributes *wireAttributes    `json:"attributes"`
	Tags       *map[string]string `json:"tags"`
}

type wireMergeRequest struct {
	X5C        []string          `json:"x5c"`
	Attributes *wireAttributes   `json:"attributes"`
	Tags       map[string]string `json:"tags"`
}

type wireOperationUpdate struct {
	CancellationRequested *bool `json:"cancellation_requested"`
}

func unix(t time.Time) *int64 {
	v := t.Unix()
	return &v
}

func ptr[T any](v T) *T { return &v }
