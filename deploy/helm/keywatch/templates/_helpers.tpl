{{/* Chart name, at most 63 characters. */}}
{{- define "keywatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "keywatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "keywatch.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version, as the helm.sh/chart label takes them. */}}
{{- define "keywatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "keywatch.labels" -}}
helm.sh/chart: {{ include "keywatch.chart" . }}
{{ include "keywatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keywatch
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "keywatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keywatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the pods run as. */}}
{{- define "keywatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keywatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The port of config.http.listen (":8466", "0.0.0.0:8466", "[::]:8466"): the container's port,
the Service's target and the prometheus.io/port annotation. An unset listen is keywatch's
default, :8466; an empty one (no HTTP listener) is refused, since the probes need it.
*/}}
{{- define "keywatch.httpPort" -}}
{{- $listen := dig "http" "listen" ":8466" (.Values.config | default dict) | toString -}}
{{- if not (contains ":" $listen) -}}
{{- fail (printf "config.http.listen %q: want host:port or :port (the probes and the Service need the HTTP listener)" $listen) -}}
{{- end -}}
{{- $port := splitList ":" $listen | last -}}
{{- if not (regexMatch "^[0-9]+$" $port) -}}
{{- fail (printf "config.http.listen %q: the port must be a number" $listen) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/* HTTPS when config.http.tls names a certificate, HTTP otherwise. */}}
{{- define "keywatch.httpScheme" -}}
{{- if dig "http" "tls" "cert_file" "" (.Values.config | default dict) -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* prometheus.io annotations for the pods or the Service. */}}
{{- define "keywatch.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "keywatch.httpPort" . | quote }}
prometheus.io/path: /metrics
{{- if eq (include "keywatch.httpScheme" .) "HTTPS" }}
prometheus.io/scheme: https
{{- end }}
{{- end -}}

{{/* One KEYWATCH_* variable from an existing Secret: (list ENV_NAME secretRef optional). */}}
{{- define "keywatch.secretEnv" -}}
{{- $name := index . 0 -}}
{{- $ref := index . 1 -}}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
      optional: {{ index . 2 }}
{{- end -}}
