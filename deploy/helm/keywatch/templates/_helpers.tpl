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
The port of a listen address (":8466", "0.0.0.0:8466", "[::]:8466"), called with
(list SETTING ADDRESS WHY): the setting's name and WHY go into the message of a refused address.
A loopback host is refused: the kubelet's probes, the Service and Prometheus reach the pod's IP,
not its loopback.
*/}}
{{- define "keywatch.listenPort" -}}
{{- $setting := index . 0 -}}
{{- $listen := index . 1 | toString -}}
{{- $why := index . 2 -}}
{{- if not (contains ":" $listen) -}}
{{- fail (printf "%s %q: want host:port or :port (%s)" $setting $listen $why) -}}
{{- end -}}
{{- $port := splitList ":" $listen | last -}}
{{- if not (regexMatch "^[0-9]+$" $port) -}}
{{- fail (printf "%s %q: the port must be a number" $setting $listen) -}}
{{- end -}}
{{- if or (lt (atoi $port) 1) (gt (atoi $port) 65535) -}}
{{- fail (printf "%s %q: the port must be 1 to 65535" $setting $listen) -}}
{{- end -}}
{{- $host := trimSuffix (printf ":%s" $port) $listen | trimPrefix "[" | trimSuffix "]" | lower -}}
{{- if regexMatch "^(localhost|127\\.[0-9.]+|::1)$" $host -}}
{{- fail (printf "%s %q: a loopback address, which the kubelet's probes and other pods cannot reach (listen on :%s)" $setting $listen $port) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/*
The port of config.http.listen: the container's http port, the Service's target, and the probes'
and prometheus.io/port's without an admin listener. An unset listen is keywatch's default, :8466;
an empty one (no HTTP listener, and then no admin listener either) is refused.
*/}}
{{- define "keywatch.httpPort" -}}
{{- $listen := dig "http" "listen" ":8466" (.Values.config | default dict) -}}
{{- include "keywatch.listenPort" (list "config.http.listen" $listen "the probes and the Service need the HTTP listener") -}}
{{- end -}}

{{/*
The port of config.http.admin_listen, the listener of /metrics, /healthz and /readyz: the
container's admin port, the probes' and prometheus.io/port's. Empty when admin_listen is empty
or unset (keywatch's default): http.listen serves those paths then.
*/}}
{{- define "keywatch.adminPort" -}}
{{- $listen := dig "http" "admin_listen" "" (.Values.config | default dict) | toString -}}
{{- if $listen -}}
{{- $port := include "keywatch.listenPort" (list "config.http.admin_listen" $listen "or empty: config.http.listen then serves /metrics, /healthz and /readyz") -}}
{{- if eq $port (include "keywatch.httpPort" .) -}}
{{- fail (printf "config.http.admin_listen %q: port %s is config.http.listen's too; give the admin listener its own port, or leave it empty" $listen $port) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{/* The container port the probes use and Prometheus scrapes: admin with an admin listener, http without. */}}
{{- define "keywatch.probePortName" -}}
{{- if include "keywatch.adminPort" . -}}admin{{- else -}}http{{- end -}}
{{- end -}}

{{/* The number of that port, for prometheus.io/port. */}}
{{- define "keywatch.metricsPort" -}}
{{- include "keywatch.adminPort" . | default (include "keywatch.httpPort" .) -}}
{{- end -}}

{{/* HTTPS when config.http.tls names a certificate, HTTP otherwise. */}}
{{- define "keywatch.httpScheme" -}}
{{- if dig "http" "tls" "cert_file" "" (.Values.config | default dict) -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* prometheus.io annotations for the pods or the Service. */}}
{{- define "keywatch.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "keywatch.metricsPort" . | quote }}
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
