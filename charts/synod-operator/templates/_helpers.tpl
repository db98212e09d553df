{{/* The release's full name, at most 63 characters. */}}
{{- define "synod-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "synod-operator.labels" -}}
app.kubernetes.io/name: synod-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "synod-operator.selectorLabels" -}}
app.kubernetes.io/name: synod-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "synod-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "synod-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs, shared by the ClusterRole and the Role. */}}
{{- define "synod-operator.rules" -}}
- apiGroups: ["synod.io"]
  resources: ["coordinationensembles"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["synod.io"]
  resources: ["coordinationensembles/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch"]
# Each ensemble's NetworkPolicy (the admin port for the operator only).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
# spec.tls with an issuer: the node and admin Certificates.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch"]
# spec.tls: the operator reads its admin client certificate and the node
# CA from the ensemble's Secrets (get by name only: no list, no watch).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* The operator's pod labels in the form of --operator-pod-labels. */}}
{{- define "synod-operator.podLabelsFlag" -}}
app.kubernetes.io/name=synod-operator,app.kubernetes.io/instance={{ .Release.Name }}
{{- end -}}
