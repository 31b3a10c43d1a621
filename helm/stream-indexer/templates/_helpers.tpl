{{/* Names and labels. */}}
{{- define "stream-indexer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stream-indexer.fullname" -}}
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

{{- define "stream-indexer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stream-indexer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stream-indexer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stream-indexer.labels" -}}
helm.sh/chart: {{ include "stream-indexer.chart" . }}
{{ include "stream-indexer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stream-indexer
{{- end }}

{{- define "stream-indexer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stream-indexer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stream-indexer.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must be a pinned version, not latest" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Name of the Secret holding secret settings (the chart's own or existingSecret). */}}
{{- define "stream-indexer.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secret" (include "stream-indexer.fullname" .)) }}
{{- end }}

{{/* The TLS Secret as a read-only volume and its mount (empty without tls.secretName). */}}
{{- define "stream-indexer.tlsVolume" -}}
{{- with .Values.tls }}{{ if .secretName }}
- name: tls
  secret:
    secretName: {{ .secretName }}
    defaultMode: {{ .defaultMode | default 288 | int }}
{{- end }}{{ end }}
{{- end }}

{{- define "stream-indexer.tlsVolumeMount" -}}
{{- with .Values.tls }}{{ if .secretName }}
- name: tls
  mountPath: {{ .mountPath | default "/etc/stream-indexer/tls" }}
  readOnly: true
{{- end }}{{ end }}
{{- end }}

{{- define "stream-indexer.metricsPort" -}}
{{- $metrics := .Values.config.metrics | default dict }}
{{- $metrics.port | default 9108 | int }}
{{- end }}

{{- define "stream-indexer.shutdownTimeout" -}}
{{- .Values.config.shutdown_timeout_s | default 25 | float64 | ceil | int }}
{{- end }}

{{/* One config value as an environment string: lists joined by commas, whole floats as integers. */}}
{{- define "stream-indexer.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* `config` as `STREAM_INDEXER_...: "value"` lines (the ConfigMap's data and the Job's env). */}}
{{- define "stream-indexer.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if kindIs "map" $value }}
{{- range $field, $fieldValue := $value }}
{{- if not (kindIs "invalid" $fieldValue) }}
{{ printf "STREAM_INDEXER_%s__%s" (upper $key) (upper $field) }}: {{ include "stream-indexer.envValue" $fieldValue | quote }}
{{- end }}
{{- end }}
{{- else if not (kindIs "invalid" $value) }}
{{ printf "STREAM_INDEXER_%s" (upper $key) }}: {{ include "stream-indexer.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Refuse values that would leave pods idle or break the shutdown contract. */}}
{{- define "stream-indexer.validate" -}}
{{- $partitions := int .Values.topicPartitions }}
{{- if lt $partitions 1 }}
{{- fail "topicPartitions must be at least 1" }}
{{- end }}
{{- if gt (int .Values.replicaCount) $partitions }}
{{- fail (printf "replicaCount (%d) is above topicPartitions (%d): extra consumers would sit idle" (int .Values.replicaCount) $partitions) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) $partitions) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is above topicPartitions (%d)" (int .Values.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicaCount) $partitions) }}
{{- fail (printf "keda.maxReplicaCount (%d) is above topicPartitions (%d)" (int .Values.keda.maxReplicaCount) $partitions) }}
{{- end }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "enable either autoscaling (CPU HPA) or keda (lag), not both: KEDA creates its own HPA" }}
{{- end }}
{{- if and (not .Values.existingSecret) (not .Values.secretEnv) }}
{{- fail "set secretEnv (at least STREAM_INDEXER_POSTGRES__DSN) or existingSecret" }}
{{- end }}
{{- range $key, $_ := .Values.secretEnv }}
{{- if not (hasPrefix "STREAM_INDEXER_" $key) }}
{{- fail (printf "secretEnv key %s must be a STREAM_INDEXER_* setting" $key) }}
{{- end }}
{{- end }}
{{- end }}
