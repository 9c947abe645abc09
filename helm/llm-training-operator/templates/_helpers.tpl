{{/* Labels on everything the chart makes. */}}
{{- define "llmtj.labels" -}}
app.kubernetes.io/part-of: llm-training-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
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
