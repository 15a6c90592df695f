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
nothing more (read from operator/marketplace_operator: kopf's watches and
indexes need list+watch, its finalizers and progress annotations patch; the
rest is k8s.Kube.get/create/patch/delete in actuate.py, nodeloop.py and
handlers/). Namespaced resources only: the same list goes into the
ClusterRole (scope cluster) or into one Role per watched namespace.
*/}}
{{- define "mpo.namespacedRules" -}}
# patch: kopf's finalizer and progress annotations (its on.delete and daemon handlers)
- apiGroups: [marketplace.p2p.dev]
  resources: [marketplacenodes]
  verbs: [list, watch, patch]
# Read through kopf's index and event handlers only: kopf writes nothing to them
- apiGroups: [marketplace.p2p.dev]
  resources: [ratelimitpolicies]
  verbs: [list, watch]
- apiGroups: [marketplace.p2p.dev]
  resources: [banlists]
  verbs: [list, watch, create, patch]
- apiGroups: [marketplace.p2p.dev]
  resources: [marketplacefleets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [marketplace.p2p.dev]
  resources: [marketplacenodes/status, marketplacefleets/status, banlists/status, ratelimitpolicies/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
# get, delete: the fleet's entry Service (spec.exposure; a new type replaces it)
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# delete: a relocated node's claim, left on a cordoned or lost Node
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create, patch, delete]
# delete: the fleet's shared policy ConfigMap, admin and CA Secrets go with its last node
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list]
# A fleet with spec.tls on, when cert-manager is installed: its CA Issuer and Certificate
# (get, patch: their owner, the MarketplaceFleet; delete: with the fleet's last node).
- apiGroups: [cert-manager.io]
  resources: [issuers, certificates]
  verbs: [get, create, patch, delete]
{{- if and (include "mpo.peering" .) (eq .Values.scope "namespaced") }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}

{{/*
Cluster-scoped reads in both scopes: the CRDs (the operator's index of
cert-manager's Certificate CRD; in cluster scope kopf's scanning, so that an
upgraded CRD is noticed without a restart). Plus the cluster-wide peering
object when peering in cluster scope. No namespaces: kopf lists and watches
them only when it scans for namespace patterns, and the chart runs it either
on all namespaces or on exact names, which turn scanning off.
*/}}
{{- define "mpo.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# The volume binding mode of a claim's StorageClass decides whether the
# operator waits for the claim to bind before it creates the pod.
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get]
# A node whose pod is not serving: is its Kubernetes Node cordoned or lost
# (relocation, docs/operations.md)?
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
{{- if and (include "mpo.peering" .) (eq .Values.scope "cluster") }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}
