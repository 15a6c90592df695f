{{/* Names, labels and the RBAC rules shared by both scopes. */}}

{{- define "mpo.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mpo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mpo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mpo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mpo.labels" -}}
{{ include "mpo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: marketplace-fleet
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mpo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mpo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mpo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mpo.nodeImage" -}}
{{- printf "%s:%s" .Values.nodeImage.repository (default .Chart.AppVersion .Values.nodeImage.tag) -}}
{{- end -}}

{{/* The namespaces watched in namespaced scope: the list, or the release namespace. */}}
{{- define "mpo.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- join "," (uniq .Values.watchNamespaces) -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "mpo.peering" -}}
{{- if .Values.ha.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Every API call the operator makes, by resource, with the verbs it uses and
nothing more. Namespaced resources only: the same list goes into the
ClusterRole (scope cluster) or into one Role per watched namespace.
*/}}
{{- define "mpo.namespacedRules" -}}
- apiGroups: [marketplace.p2p.dev]
  resources: [marketplacenodes, marketplacefleets, banlists, ratelimitpolicies]
  verbs: [get, list, watch, patch, update]
- apiGroups: [marketplace.p2p.dev]
  resources: [banlists, marketplacefleets]
  verbs: [create]
- apiGroups: [marketplace.p2p.dev]
  resources: [marketplacenodes/status, marketplacefleets/status, banlists/status, ratelimitpolicies/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [services, configmaps, persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
{{- if and (include "mpo.peering" .) (eq .Values.scope "namespaced") }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{/*
Cluster-scoped reads kopf makes in both scopes: the CRDs (so that an upgraded
CRD is noticed without a restart) and, in namespaced scope, the namespaces
(so that a watched namespace created later is picked up). Plus the
cluster-wide peering object when peering in cluster scope.
*/}}
{{- define "mpo.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- if and (include "mpo.peering" .) (eq .Values.scope "cluster") }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}
