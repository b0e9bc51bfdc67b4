{{/* Names and labels come only from here; every name is truncated to 63 characters (DNS label limit). */}}
{{- define "tickstrata.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tickstrata.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels never include the chart version: selectors are immutable. */}}
{{- define "tickstrata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tickstrata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tickstrata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "tickstrata.selectorLabels" . }}
app.kubernetes.io/part-of: tickstrata
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
