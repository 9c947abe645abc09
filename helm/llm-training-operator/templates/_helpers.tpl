{{/* The operator's objects' name: the release's name when it already says llm-training-operator (the plain
manifests render with release llm-training-operator, hence their names), else <release>-llm-training-operator. */}}
{{- define "llmtj.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{/* What selects the operator's pods: stable across upgrades (a Deployment's selector cannot change). */}}
{{- define "llmtj.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on everything the chart makes. */}}
{{- define "llmtj.labels" -}}
app.kubernetes.io/part-of: llm-training-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The operator's image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "llmtj.image" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Whether a Prometheus Operator object renders: "auto" follows the API, true requires it. Args: (list . value name). */}}
{{- define "llmtj.monitor" -}}
{{- $root := index . 0 }}{{ $want := index . 1 }}{{ $name := index . 2 }}
{{- $served := $root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}
{{- if and (eq (toString $want) "true") (not $served) }}
{{- fail (printf "monitoring.%s=true, but the cluster does not serve monitoring.coreos.com/v1 (the Prometheus Operator's API): install the Prometheus Operator, or set monitoring.%s to auto or false" $name $name) }}
{{- end }}
{{- if or (eq (toString $want) "true") (and (eq (toString $want) "auto") $served) }}true{{ end }}
{{- end }}

{{/* The rules a job's reconcile needs, in whichever namespace it watches (operator/llmtj_operator/kube.py and kopf's
watches). No secrets, no pod exec; pods are replaced, not edited: the one patch lifts its own scheduling gate. */}}
{{- define "llmtj.jobRules" -}}
# the jobs: watch them, keep kopf's bookkeeping annotations, delete finished ones after their TTL
- apiGroups: ["llmtj.dev"]
  resources: ["llmtrainingjobs"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["llmtj.dev"]
  resources: ["llmtrainingjobs/status"]
  verbs: ["get", "patch"]
# the children it renders
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
# a job with schedulerName under a gang scheduler: its PodGroup (podgroup.py), made once, resized with minReplicas
- apiGroups: ["scheduling.x-k8s.io", "scheduling.volcano.sh"]
  resources: ["podgroups"]
  verbs: ["get", "create", "patch"]
# what it tells people
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
