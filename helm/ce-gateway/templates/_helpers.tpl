{{/* Names and labels. */}}
{{- define "ce-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ce-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ce-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ce-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ce-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ce-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ce-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ce-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret mounted at /secrets: existingSecret, the chart's own, or none. */}}
{{- define "ce-gateway.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else if .Values.secrets -}}
{{- printf "%s-secrets" (include "ce-gateway.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The port the gateway listens on: config.server.port, 8080 by default. */}}
{{- define "ce-gateway.port" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $server.port | default 8080 -}}
{{- end -}}

{{/*
The configuration file: values' `config` with the two keys the chart owns (the listening
host and the data directory on the volume).
*/}}
{{- define "ce-gateway.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $server := get $config "server" | default dict -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "dataDir" "/data" -}}
{{- $_ := set $config "server" $server -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
"true" when an IPv4 CIDR covers the cloud metadata address 169.254.169.254 and more (so that an
`except` is a strict subset of it), "exact" when it is that address alone; "" otherwise (IPv6
included).
*/}}
{{- define "ce-gateway.coversMetadata" -}}
{{- $parts := splitList "/" . -}}
{{- $octets := splitList "." (first $parts) -}}
{{- if and (eq (len $octets) 4) (not (contains ":" .)) -}}
{{- $bits := 32 -}}
{{- if gt (len $parts) 1 -}}{{- $bits = atoi (index $parts 1) -}}{{- end -}}
{{- $address := add (mul (atoi (index $octets 0)) 16777216) (mul (atoi (index $octets 1)) 65536) (mul (atoi (index $octets 2)) 256) (atoi (index $octets 3)) -}}
{{- $metadata := 2852039166 -}}
{{- $block := 1 -}}
{{- range until (int (sub 32 $bits)) -}}{{- $block = mul $block 2 -}}{{- end -}}
{{- if eq (div $address $block) (div $metadata $block) -}}{{- ternary "exact" "true" (eq $bits 32) -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* PromQL label matchers for this release's series. */}}
{{- define "ce-gateway.promSelector" -}}
{{- if .Values.metrics.prometheusRule.selector -}}
{{- .Values.metrics.prometheusRule.selector -}}
{{- else -}}
{{- printf "job=%q,namespace=%q" (include "ce-gateway.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
