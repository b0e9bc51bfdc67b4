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

{{/* Labels of one component: the common labels plus app.kubernetes.io/component. Call with (list . "writer"). */}}
{{- define "tickstrata.componentLabels" -}}
{{ include "tickstrata.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
{{- end -}}

{{- define "tickstrata.componentSelector" -}}
{{ include "tickstrata.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tickstrata.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The restricted Pod Security profile, for every pod of the chart. */}}
{{- define "tickstrata.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tickstrata.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* OpenTelemetry: the service name is the pod's component label; the endpoint comes from values. */}}
{{- define "tickstrata.otelEnv" -}}
- name: OTEL_SERVICE_NAME
  valueFrom:
    fieldRef:
      fieldPath: "metadata.labels['app.kubernetes.io/component']"
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.namespace={{ .Release.Namespace }},deployment.environment={{ .Values.environment }}"
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* A memory size in MiB from a Kubernetes quantity (512Mi, 1Gi, 1Ti) or a Redis size (768mb, 2gb); 0 if neither. */}}
{{- define "tickstrata.mebibytes" -}}
{{- $q := . | toString -}}
{{- if regexMatch "^[0-9]+(Mi|mb)$" $q -}}{{ regexFind "^[0-9]+" $q }}
{{- else if regexMatch "^[0-9]+(Gi|gb)$" $q -}}{{ mul (regexFind "^[0-9]+" $q | int64) 1024 }}
{{- else if regexMatch "^[0-9]+Ti$" $q -}}{{ mul (regexFind "^[0-9]+" $q | int64) 1048576 }}
{{- else -}}0
{{- end -}}
{{- end -}}

{{/* The in-chart Redis's maxmemory must fit its pod's memory limit with headroom (at most 90%), or the kernel's
OOM killer, not Redis's noeviction, decides what happens when it fills. Renders nothing; fails the install. */}}
{{- define "tickstrata.redisBudgetCheck" -}}
{{- $limit := ((.resources | default dict).limits | default dict).memory | default "" -}}
{{- $limitMiB := include "tickstrata.mebibytes" $limit | int64 -}}
{{- $maxMiB := include "tickstrata.mebibytes" .maxmemory | int64 -}}
{{- if eq $limitMiB 0 -}}
{{- fail (printf "redis.inChart.resources.limits.memory must be set in Mi, Gi or Ti (got %q): maxmemory is sized against it" $limit) -}}
{{- end -}}
{{- if eq $maxMiB 0 -}}
{{- fail "redis.inChart.maxmemory must be set (e.g. 768mb): a bounded Redis is the stream contract" -}}
{{- end -}}
{{- if gt (mul $maxMiB 10) (mul $limitMiB 9) -}}
{{- fail (printf "redis.inChart.maxmemory %s is over 90%% of the pod's memory limit %s: leave headroom for the AOF rewrite and client buffers (75%% is the default)" .maxmemory $limit) -}}
{{- end -}}
{{- end -}}

{{/* A counter rose above a threshold within a window, counting a series that first appeared within it. Call with
(list metric selector "label, label" window threshold). */}}
{{- define "tickstrata.increasedExpr" -}}
{{- $metric := index . 0 -}}{{- $sel := index . 1 -}}{{- $by := index . 2 -}}{{- $window := index . 3 -}}{{- $above := index . 4 | int64 -}}
sum by ({{ $by }}) (increase({{ $metric }}{ {{- $sel -}} }[{{ $window }}])) > {{ $above }}
or
sum by ({{ $by }}) ({{ $metric }}{ {{- $sel -}} } unless {{ $metric }}{ {{- $sel -}} } offset {{ $window }}) > {{ $above }}
{{- end -}}
