{{/* Chart name, truncated to a DNS label. */}}
{{- define "gitaly-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: "<release>-<chart>", or the release name alone when it
already contains the chart name.
*/}}
{{- define "gitaly-operator.fullname" -}}
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

{{- define "gitaly-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gitaly-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitaly-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "gitaly-operator.labels" -}}
helm.sh/chart: {{ include "gitaly-operator.chart" . }}
{{ include "gitaly-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gitaly-operator
{{- end }}

{{- define "gitaly-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gitaly-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gitaly-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gitaly-operator.leaseName" -}}
{{- default (include "gitaly-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
What the operator does against the API, verb by verb (src/controller/reconcile/):
- gitalyclusters: informer (list, watch); status through server-side apply on the
  status subresource (patch). It sets blockOwnerDeletion on the objects it owns, which
  clusters running the OwnerReferencesPermissionEnforcement admission plugin allow only
  to who may update gitalyclusters/finalizers.
- owned kinds: informers (list, watch) and server-side apply (patch; create when the
  object does not exist yet).
- secrets: also read by name (user-provided tokens, passwords, certificates: get) and
  generated ones created once (create).
- jobs: superseded migration Jobs are deleted (delete).
- persistentvolumeclaims: grown in place when spec.gitaly.storage.size grows (patch).
- events: recorded (create), repeats counted on the existing Event (patch).
- cert-manager certificates: server-side apply (create, patch) for tls.mode CertManager.
No rule holds a wildcard; test/integration/helm checks that, and that these rules
suffice for a reconcile on a real kube-apiserver.
*/}}
{{- define "gitaly-operator.rules" -}}
- apiGroups: [gitaly.dev]
  resources: [gitalyclusters]
  verbs: [list, watch]
- apiGroups: [gitaly.dev]
  resources: [gitalyclusters/status]
  verbs: [patch]
- apiGroups: [gitaly.dev]
  resources: [gitalyclusters/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  resources: [statefulsets, deployments]
  verbs: [list, watch, create, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch]
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [create, patch]
{{- end }}
