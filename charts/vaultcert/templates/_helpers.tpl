{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "vaultcert.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: fullnameOverride, or the release name when it contains the chart name, else "<release>-<chart>". */}}
{{- define "vaultcert.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vaultcert.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "vaultcert.labels" -}}
helm.sh/chart: {{ include "vaultcert.chart" . }}
{{ include "vaultcert.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vaultcert
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the controller pods. */}}
{{- define "vaultcert.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaultcert.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "vaultcert.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vaultcert.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container image: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "vaultcert.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Namespace of the leader election Lease. */}}
{{- define "vaultcert.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* The watched namespaces, validated: installMode namespaces needs at least one. */}}
{{- define "vaultcert.watchNamespaces" -}}
{{- if eq .Values.installMode "namespaces" }}
{{- if not .Values.watchNamespaces }}
{{- fail "installMode \"namespaces\" needs at least one entry in watchNamespaces" }}
{{- end }}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- end }}
{{- end }}

{{/*
RBAC rules. They must grant exactly what config/rbac/role.yaml grants (generated from the +kubebuilder:rbac
markers in controllers/); hack/helm-test.sh fails when they drift.
"namespacedRules" are the permissions on namespaced kinds (a Role per watched namespace in namespaces mode),
"clusterScopedRules" those on cluster-scoped kinds, "leaseRules" the leader election Lease.
*/}}
{{- define "vaultcert.namespacedRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "delete", "get", "list", "patch", "update", "watch"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["daemonsets", "deployments", "statefulsets"]
  verbs: ["get", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "referencegrants"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vaultcert.io"]
  resources: ["vaultconnections"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vaultcert.io"]
  resources: ["vaultcertificates"]
  verbs: ["create", "delete", "get", "list", "patch", "update", "watch"]
- apiGroups: ["vaultcert.io"]
  resources: ["vaultcertificates/status", "vaultconnections/status"]
  verbs: ["get", "patch", "update"]
{{- end }}

{{- define "vaultcert.clusterScopedRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vaultcert.io"]
  resources: ["clustervaultconnections"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["vaultcert.io"]
  resources: ["clustervaultconnections/status"]
  verbs: ["get", "patch", "update"]
{{- end }}

{{- define "vaultcert.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create", "delete", "get", "list", "patch", "update", "watch"]
{{- end }}

{{/* Key for the runbook anchors of the alerts. */}}
{{- define "vaultcert.runbook" -}}
{{- printf "%s#%s" .root.Values.prometheusRule.runbookBaseURL .anchor }}
{{- end }}
