package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	vaultcertv1 "github.com/vaultcert/vaultcert/api/v1alpha1"
	"github.com/vaultcert/vaultcert/internal/fakevault"
)

// The objects the harness creates. The names are what an application team and a cluster admin would write.
const (
	appNamespace      = "e2e"
	systemNamespace   = "vaultcert-system" // the controller's credentials, as a cluster admin keeps them
	traefikNamespace  = "traefik"
	connectionName    = "vault"
	credentialsSecret = "kv-credentials"
	serviceName       = "backend"
	servicePort       = 80
	// traefikClass names both the IngressClass and the GatewayClass.
	traefikClass = "traefik"
	// traefikIngressController and traefikGatewayController are the controller names Traefik's providers claim
	// IngressClasses and GatewayClasses by.
	traefikIngressController = "traefik.io/ingress-controller"
	traefikGatewayController = "traefik.io/gateway-controller"
	refreshInterval          = "1m"

	e2eClientID     = "00000000-0000-4000-8000-0000000000e2"
	e2eClientSecret = "e2e-client-secret"
)

// The two routes. Each has its own host name and Key Vault certificate: Traefik keeps the certificates of both
// providers in one store and picks by SNI, so a shared name would not show which provider served which Secret.
var (
	ingressRoute = &route{kind: "Ingress", name: "app", host: "app.e2e.test", certName: "app-e2e-test", secretName: "app-tls"}
	gatewayRoute = &route{kind: "Gateway", name: "gw", host: "gw.e2e.test", certName: "gw-e2e-test", secretName: "gw-tls"}
)

// newClient is a direct client that also knows the Gateway API kinds (localcluster's knows the built-in and
// vaultcert kinds only).
func newClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, vaultcertv1.AddToScheme, gatewayv1.Install} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// gatewayCRDs are the standard-channel CRDs Traefik's Gateway provider watches, from the Gateway API module
// vaultcert's go.mod pins (its Gateway shim is built against it; Traefik v3.6 reads the versions it serves).
// They are read from the module cache as `go list` finds it; installing them is what turns vaultcert's Gateway
// shim on, so it happens before vaultcert starts.
func gatewayCRDs() ([]string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return nil, fmt.Errorf("locating the sigs.k8s.io/gateway-api module (go list -m): %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	var paths []string
	for _, kind := range []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"} {
		paths = append(paths, filepath.Join(dir, "gateway.networking.k8s.io_"+kind+".yaml"))
	}
	return paths, nil
}

// createBase creates what exists before the routes: the namespaces, the ClusterVaultConnection (the cluster's
// default) with a service principal to the fake vault, the IngressClass (and GatewayClass), and a selector-less
// Service whose one EndpointSlice points at the harness's backend, since no pod or endpoint controller runs here.
func createBase(ctx context.Context, k8s client.Client, vault *fakevault.Server, backend *net.TCPAddr, gateway bool) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: credentialsSecret, Namespace: systemNamespace},
			StringData: map[string]string{"clientSecret": e2eClientSecret}},
		&vaultcertv1.ClusterVaultConnection{
			ObjectMeta: metav1.ObjectMeta{Name: connectionName,
				Annotations: map[string]string{vaultcertv1.AnnotationDefaultConnection: "true"}},
			Spec: vaultcertv1.ClusterVaultConnectionSpec{ConnectionSpec: vaultcertv1.ConnectionSpec{
				VaultURL: vault.URL(),
				Auth: &vaultcertv1.ConnectionAuth{ServicePrincipal: &vaultcertv1.ServicePrincipalAuth{
					TenantID: vault.TenantID(), ClientID: e2eClientID,
					ClientSecretRef: &vaultcertv1.SecretKeyReference{Name: credentialsSecret, Namespace: systemNamespace, Key: "clientSecret"},
				}},
				// The fake's authority is not Entra ID's: instance discovery would ask login.microsoftonline.com.
				Cloud: &vaultcertv1.CloudConfig{AuthorityHost: vault.AuthorityHost(), CABundle: string(vault.CAPEM()),
					DisableInstanceDiscovery: true},
			}},
		},
		&networkingv1.IngressClass{
			ObjectMeta: metav1.ObjectMeta{Name: traefikClass},
			Spec:       networkingv1.IngressClassSpec{Controller: traefikIngressController},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: serviceName, Namespace: appNamespace},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "http", Port: servicePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(backend.Port),
			}}},
		},
		// Traefik matches the slice's port to the Service's port by name and sends traffic to the endpoint's
		// address directly (it does not use the ClusterIP).
		&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: serviceName + "-harness", Namespace: appNamespace, Labels: map[string]string{
				discoveryv1.LabelServiceName: serviceName,
				discoveryv1.LabelManagedBy:   "e2e-ingress.vaultcert.io",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{backend.IP.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ref(true), Serving: ref(true)},
			}},
			Ports: []discoveryv1.EndpointPort{{Name: ref("http"), Port: ref(int32(backend.Port)), Protocol: ref(corev1.ProtocolTCP)}},
		},
	}
	if gateway {
		objs = append(objs, &gatewayv1.GatewayClass{
			ObjectMeta: metav1.ObjectMeta{Name: traefikClass},
			Spec:       gatewayv1.GatewayClassSpec{ControllerName: traefikGatewayController},
		})
	}
	return create(ctx, k8s, objs...)
}

// create creates the objects in order.
func create(ctx context.Context, k8s client.Client, objs ...client.Object) error {
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// traefikRBAC creates Traefik's identity as its Helm chart does: a ServiceAccount bound to a ClusterRole with the
// reads its providers need (and their status updates), and returns a token for it. Running Traefik as that
// ServiceAccount rather than as an admin proves the Secrets are readable with what a real installation grants.
func traefikRBAC(ctx context.Context, k8s client.Client, gateway bool) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "traefik", Namespace: traefikNamespace}}
	read := []string{"get", "list", "watch"}
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "secrets", "nodes"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"extensions", "networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: read},
		{APIGroups: []string{"extensions", "networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
	}
	if gateway {
		rules = append(rules,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces", "configmaps"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{gatewayv1.GroupName}, Verbs: read, Resources: []string{
				"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies"}},
			rbacv1.PolicyRule{APIGroups: []string{gatewayv1.GroupName}, Verbs: []string{"update"}, Resources: []string{
				"gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status", "backendtlspolicies/status"}})
	}
	if err := create(ctx, k8s,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: traefikNamespace}},
		sa,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "traefik"}, Rules: rules},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "traefik"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "traefik"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
		},
	); err != nil {
		return "", err
	}
	// A TokenRequest needs no controller-manager (none runs here); the token outlives any run of the harness.
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ref(int64(3600))}}
	if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	return tr.Status.Token, nil
}

// vaultcertKeys are the keys that ask vaultcert's shims for a VaultCertificate: annotations on an Ingress, a
// listener's tls.options on a Gateway.
func vaultcertKeys(r *route) map[string]string {
	return map[string]string{
		vaultcertv1.AnnotationCertificateName:   r.certName,
		vaultcertv1.AnnotationClusterConnection: connectionName,
		vaultcertv1.AnnotationRefreshInterval:   refreshInterval,
	}
}

// newIngress is the application team's Ingress: served by Traefik, its TLS Secret named in spec.tls, and the
// vaultcert annotations that ask the ingress shim for a VaultCertificate behind that Secret.
func newIngress(r *route) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: appNamespace, Annotations: vaultcertKeys(r)},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ref(traefikClass),
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{r.host}, SecretName: r.secretName}},
			Rules: []networkingv1.IngressRule{{
				Host: r.host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: serviceName, Port: networkingv1.ServiceBackendPort{Number: servicePort},
						}},
					}},
				}},
			}},
		},
	}
}

// newGateway is a Gateway of class traefik with one HTTPS listener for the route's host, terminating TLS with the
// route's Secret, its tls.options asking the Gateway shim for the VaultCertificate. Traefik binds a listener to the
// entry point whose address has the listener's port, so the port is that of the harness's gateway entry point.
func newGateway(r *route, port int) *gatewayv1.Gateway {
	options := map[gatewayv1.AnnotationKey]gatewayv1.AnnotationValue{}
	for k, v := range vaultcertKeys(r) {
		options[gatewayv1.AnnotationKey(k)] = gatewayv1.AnnotationValue(v)
	}
	terminate := gatewayv1.TLSModeTerminate
	return &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: appNamespace},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: traefikClass,
			Listeners: []gatewayv1.Listener{{
				Name:     "websecure",
				Hostname: ref(gatewayv1.Hostname(r.host)),
				Port:     gatewayv1.PortNumber(port),
				Protocol: gatewayv1.HTTPSProtocolType,
				TLS: &gatewayv1.ListenerTLSConfig{
					Mode:            &terminate,
					CertificateRefs: []gatewayv1.SecretObjectReference{{Name: gatewayv1.ObjectName(r.secretName)}},
					Options:         options,
				},
			}},
		},
	}
}

// newHTTPRoute attaches the backend Service to the Gateway for the route's host.
func newHTTPRoute(r *route) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: appNamespace},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: gatewayv1.ObjectName(r.name)}}},
			Hostnames:       []gatewayv1.Hostname{gatewayv1.Hostname(r.host)},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: serviceName, Port: ref(gatewayv1.PortNumber(servicePort))},
			}}}}},
		},
	}
}

// newVaultCertificate is what a shim creates for the route's Secret: named after the Secret, in the route's
// namespace. The harness creates it only with -create-vaultcertificate, for a vaultcert without the shims.
func newVaultCertificate(r *route) (*vaultcertv1.VaultCertificate, error) {
	interval, err := time.ParseDuration(refreshInterval)
	if err != nil {
		return nil, err
	}
	return &vaultcertv1.VaultCertificate{
		ObjectMeta: metav1.ObjectMeta{Name: r.secretName, Namespace: appNamespace},
		Spec: vaultcertv1.VaultCertificateSpec{
			ConnectionRef:   vaultcertv1.ConnectionReference{Kind: vaultcertv1.ClusterVaultConnectionKind, Name: connectionName},
			CertificateName: r.certName,
			SecretName:      r.secretName,
			RefreshInterval: &metav1.Duration{Duration: interval},
		},
	}, nil
}

// checkShimContract reports how a shim's VaultCertificate differs from the contract: controlled by the route
// object, reading the certificate the route names through the connection it names into the route's Secret, at
// the interval it names.
func checkShimContract(vc *vaultcertv1.VaultCertificate, r *route, owner client.Object) error {
	ctrl := metav1.GetControllerOf(vc)
	if ctrl == nil || ctrl.Kind != r.kind || ctrl.Name != owner.GetName() || ctrl.UID != owner.GetUID() {
		return fmt.Errorf("VaultCertificate %s/%s is not controlled by %s %s (UID %s): controller owner %+v",
			vc.Namespace, vc.Name, r.kind, owner.GetName(), owner.GetUID(), ctrl)
	}
	var problems []string
	want := func(field, have, want string) {
		if have != want {
			problems = append(problems, fmt.Sprintf("%s is %q, want %q", field, have, want))
		}
	}
	want("spec.certificateName", vc.Spec.CertificateName, r.certName)
	want("spec.secretName", vc.Spec.SecretName, r.secretName)
	want("spec.connectionRef.kind", string(vc.Spec.ConnectionRef.Kind), string(vaultcertv1.ClusterVaultConnectionKind))
	want("spec.connectionRef.name", vc.Spec.ConnectionRef.Name, connectionName)
	interval := ""
	if vc.Spec.RefreshInterval != nil {
		interval = vc.Spec.RefreshInterval.Duration.String()
	}
	want("spec.refreshInterval", interval, "1m0s")
	if len(problems) > 0 {
		return fmt.Errorf("VaultCertificate %s/%s breaks the %s shim's contract: %s", vc.Namespace, vc.Name, r.kind, strings.Join(problems, "; "))
	}
	return nil
}

// refreshPatch is a merge patch setting the refresh annotation to a new value: any new value asks vaultcert to
// read Key Vault now.
func refreshPatch(stamp int64) client.Patch {
	return client.RawPatch("application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, vaultcertv1.AnnotationRefresh, strconv.FormatInt(stamp, 10)))
}

// ref returns a pointer to v, for the API's optional fields.
func ref[T any](v T) *T { return &v }
