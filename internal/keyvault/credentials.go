package keyvault

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/vaultcert/vaultcert/internal/pki"
)

// Transport timeouts. A Key Vault try is further bounded by the SDK's TryTimeout (see newRetryOptions).
const (
	dialTimeout           = 10 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	responseHeaderTimeout = 30 * time.Second
	idleConnTimeout       = 90 * time.Second
	// httpClientTimeout is a backstop for token requests, which have no TryTimeout of ours.
	httpClientTimeout = 60 * time.Second
)

// NewHTTPClient returns the *http.Client used for the vault and the authority: the system roots plus
// caBundle (PEM, optional), TLS 1.2 or later, proxy from the environment, bounded timeouts and response
// headers, and no redirects: a 3xx reaches the SDK as an error response, because a redirect from a hostile
// vault or authority could point anywhere (with the bearer token or the client credential attached).
func NewHTTPClient(caBundle []byte) (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, fmt.Errorf("%w: cloud.caBundle holds no PEM certificate", ErrInvalidConfig)
		}
		tlsConfig.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        tlsConfig,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  responseHeaderTimeout,
		IdleConnTimeout:        idleConnTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       httpClientTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// NewCredential builds the token credential for one identity. transport carries the TLS settings for
// the authority (nil means NewHTTPClient(cloudCfg.CABundle)); response bodies are capped at
// MaxResponseBytes either way. It has no host allow-list: use a Factory for that.
//
// Tenants stay strict: no AdditionallyAllowedTenants, so a vault whose challenge names another tenant
// than the configured one gets an AuthenticationError instead of a token for that tenant.
//
// Every error the credential returns from GetToken is marked so that Classify reports it as an
// AuthenticationError (azidentity does not export all of its error types), except context errors and
// requests refused by an allow-list (*HostNotAllowedError).
func NewCredential(auth AuthConfig, cloudCfg CloudConfig, transport policy.Transporter) (azcore.TokenCredential, error) {
	if transport == nil {
		hc, err := NewHTTPClient(cloudCfg.CABundle)
		if err != nil {
			return nil, err
		}
		transport = hc
	}
	return newCredential(auth, cloudCfg, credentialClientOptions(cloudCfg, newGuardTransport(transport, nil), ""))
}

// credentialClientOptions is the azcore configuration shared by every credential type.
func credentialClientOptions(cloudCfg CloudConfig, transport policy.Transporter, applicationID string) azcore.ClientOptions {
	co := azcore.ClientOptions{
		Transport: transport,
		Telemetry: policy.TelemetryOptions{ApplicationID: applicationID},
	}
	// Left empty here, azidentity uses AZURE_AUTHORITY_HOST or Azure public; newCredential pins Azure public
	// for identities that belong to a connection rather than to the controller's pod.
	if host := cloudCfg.AuthorityHost; host != "" {
		if !strings.HasSuffix(host, "/") {
			host += "/"
		}
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: host}
	}
	return co
}

// newCredential is NewCredential with prepared client options.
func newCredential(auth AuthConfig, cloudCfg CloudConfig, co azcore.ClientOptions) (azcore.TokenCredential, error) {
	var (
		cred azcore.TokenCredential
		err  error
	)
	co = pinAuthority(auth.Method, co)
	switch auth.Method {
	case AuthClientSecret:
		if err := requireFields(auth, true, true); err != nil {
			return nil, err
		}
		if auth.ClientSecret == "" {
			return nil, fmt.Errorf("%w: the client secret is empty", ErrInvalidConfig)
		}
		cred, err = azidentity.NewClientSecretCredential(auth.TenantID, auth.ClientID, auth.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: cloudCfg.DisableInstanceDiscovery})

	case AuthClientCertificate:
		if err := requireFields(auth, true, true); err != nil {
			return nil, err
		}
		if len(auth.ClientCertificate) == 0 {
			return nil, fmt.Errorf("%w: the client certificate is empty", ErrInvalidConfig)
		}
		var (
			certs []*x509.Certificate
			key   crypto.PrivateKey
			perr  error
		)
		if block, _ := pem.Decode(auth.ClientCertificate); block == nil {
			// Bytes without a PEM block are PKCS#12, whose KDF iteration counts are the file's to choose: pki
			// decodes them with every derivation bounded (azidentity's own PKCS#12 reader is not).
			certs, key, perr = pki.DecodeClientPFX(auth.ClientCertificate)
		} else {
			certs, key, perr = azidentity.ParseCertificates(auth.ClientCertificate, nil)
		}
		if perr != nil {
			// The parsers' messages describe the format problem, never the bytes.
			return nil, fmt.Errorf("%w: client certificate: %v", ErrInvalidConfig, perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(auth.TenantID, auth.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{
				ClientOptions:            co,
				DisableInstanceDiscovery: cloudCfg.DisableInstanceDiscovery,
				// Send x5c so subject-name/issuer (SNI) registrations work and rotated certificates need no re-upload.
				SendCertificateChain: true,
			})

	case AuthManagedIdentity:
		opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if auth.ClientID != "" {
			opts.ID = azidentity.ClientID(auth.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)

	case AuthWorkloadIdentity:
		if err := requireFields(auth, true, true); err != nil {
			return nil, err
		}
		if auth.Assertion == nil {
			return nil, fmt.Errorf("%w: workload identity needs an assertion source", ErrInvalidConfig)
		}
		assertion := auth.Assertion
		cred, err = azidentity.NewClientAssertionCredential(auth.TenantID, auth.ClientID,
			func(ctx context.Context) (string, error) { return assertion(ctx) },
			&azidentity.ClientAssertionCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: cloudCfg.DisableInstanceDiscovery})

	case AuthControllerWorkloadIdentity:
		if err := requireFields(auth, true, true); err != nil {
			return nil, err
		}
		tokenFile := auth.TokenFile
		if tokenFile == "" {
			tokenFile = os.Getenv("AZURE_FEDERATED_TOKEN_FILE")
		}
		if tokenFile == "" {
			return nil, fmt.Errorf("%w: the controller has no workload identity: AZURE_FEDERATED_TOKEN_FILE is not set in its pod (label the pod azure.workload.identity/use=true and annotate its ServiceAccount with azure.workload.identity/client-id)", ErrInvalidConfig)
		}
		cred, err = azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            co,
			ClientID:                 auth.ClientID,
			TenantID:                 auth.TenantID,
			TokenFilePath:            tokenFile,
			DisableInstanceDiscovery: cloudCfg.DisableInstanceDiscovery,
		})

	case AuthDefault, "":
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            co,
			DisableInstanceDiscovery: cloudCfg.DisableInstanceDiscovery,
			TenantID:                 auth.TenantID,
		})

	default:
		return nil, fmt.Errorf("%w: unknown auth method %q", ErrInvalidConfig, auth.Method)
	}
	if err != nil {
		// Constructor errors are configuration problems (bad tenant ID format, unsupported identity kind).
		return nil, fmt.Errorf("%w: %s credential: %v", ErrInvalidConfig, methodName(auth.Method), err)
	}
	return &markedCredential{cred: cred}, nil
}

// pinAuthority returns co with Azure public as the authority when the connection names none and the
// identity is the connection's own: it must not depend on the controller pod's AZURE_AUTHORITY_HOST.
// China and US Government are selected with cloud.authorityHost https://login.chinacloudapi.cn/ and
// https://login.microsoftonline.us/. The controller's own identities keep azidentity's default
// (AZURE_AUTHORITY_HOST, else Azure public).
func pinAuthority(m AuthMethod, co azcore.ClientOptions) azcore.ClientOptions {
	if co.Cloud.ActiveDirectoryAuthorityHost == "" && !usesControllerEnvironment(m) {
		co.Cloud = cloud.AzurePublic
	}
	return co
}

// usesControllerEnvironment reports whether a method is the controller pod's own identity, which follows
// the pod's environment (AZURE_AUTHORITY_HOST, set by the workload identity webhook) when the connection
// names no authority.
func usesControllerEnvironment(m AuthMethod) bool {
	switch m {
	case AuthDefault, "", AuthManagedIdentity, AuthControllerWorkloadIdentity:
		return true
	}
	return false
}

// requireFields checks the tenant and client IDs a service principal needs.
func requireFields(auth AuthConfig, tenant, client bool) error {
	var missing []string
	if tenant && auth.TenantID == "" {
		missing = append(missing, "tenant ID")
	}
	if client && auth.ClientID == "" {
		missing = append(missing, "client ID")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s authentication needs a %s", ErrInvalidConfig, methodName(auth.Method), strings.Join(missing, " and a "))
	}
	return nil
}

// methodName is the method for messages, "Default" when unset.
func methodName(m AuthMethod) string {
	if m == "" {
		return string(AuthDefault)
	}
	return string(m)
}

// markedCredential wraps a credential so its failures are recognisable (see tokenError).
type markedCredential struct{ cred azcore.TokenCredential }

// GetToken implements azcore.TokenCredential.
func (c *markedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	// azidentity keeps only the text of a transport error; the sink keeps the guard's typed error.
	gctx, sink := withGuardSink(ctx)
	tk, err := c.cred.GetToken(gctx, opts)
	if err != nil {
		// A cancelled or expired context is the caller's doing, not the identity's. azidentity sometimes
		// flattens it into a message, so ask the context rather than the error.
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return tk, err
			}
			return tk, fmt.Errorf("token request interrupted: %w", cerr)
		}
		if gerr := sink.get(); gerr != nil {
			var hn *HostNotAllowedError
			if errors.As(gerr, &hn) {
				// The connection's configuration, not its identity: not an AuthenticationError.
				return tk, hn
			}
			// An oversized answer: an AuthenticationError that says so, instead of azidentity's text.
			return tk, &tokenError{err: gerr}
		}
		return tk, &tokenError{err: err}
	}
	return tk, nil
}
