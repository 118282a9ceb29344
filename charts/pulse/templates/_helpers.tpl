{{/* Chart name, overridable. */}}
{{- define "pulse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name when it already contains the chart
name (so `helm install pulse` gives `pulse`, not `pulse-pulse`).
*/}}
{{- define "pulse.fullname" -}}
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

{{- define "pulse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select Pulse's pods: stable across upgrades. */}}
{{- define "pulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pulse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "pulse.labels" -}}
helm.sh/chart: {{ include "pulse.chart" . }}
{{ include "pulse.selectorLabels" . }}
app.kubernetes.io/version: {{ include "pulse.imageTag" . | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: pulse
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the monitoring objects: `release: <release name>` (what
kube-prometheus-stack's Prometheus selects by default), then the user's labels,
which may override it to match another Prometheus.
*/}}
{{- define "pulse.monitoringLabels" -}}
{{- $labels := merge (dict) (.extra | default dict) (dict "release" .root.Release.Name) -}}
{{ include "pulse.labels" .root }}
{{- range $k, $v := $labels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}

{{- define "pulse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pulse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels of the load generator: not the Service's selector, so it never receives traffic. */}}
{{- define "pulse.loadgenLabels" -}}
helm.sh/chart: {{ include "pulse.chart" . }}
app.kubernetes.io/name: {{ include "pulse.name" . }}-loadgen
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "pulse.imageTag" . | quote }}
app.kubernetes.io/component: loadgen
app.kubernetes.io/part-of: pulse
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The runtime settings ConfigMap Pulse watches. */}}
{{- define "pulse.runtimeConfigMap" -}}
{{- printf "%s-runtime" (include "pulse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pulse.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "pulse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "pulse.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Grace period: longer than the shutdown delay plus the drain timeout, so the
kubelet never kills a pod that is still draining. An explicit value that is too
short is refused at install time.
*/}}
{{- define "pulse.terminationGracePeriod" -}}
{{- $needed := add .Values.config.shutdownDelaySeconds .Values.config.shutdownTimeoutSeconds -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdownDelaySeconds + config.shutdownTimeoutSeconds (%v)" .Values.terminationGracePeriodSeconds $needed) -}}
{{- end -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $needed 5 -}}
{{- end -}}
{{- end }}

{{/*
The service.name of everything Pulse emits: OTEL_SERVICE_NAME for its spans and, as a pod annotation
the collector's k8sattributes processor reads, for its log lines in Loki. By default the full name,
which is also the Service's name and so the `job` label of its metrics: one name joins all three.
*/}}
{{- define "pulse.serviceName" -}}
{{- .Values.otel.serviceName | default (include "pulse.fullname" .) }}
{{- end }}

{{/*
Where Pulse sends its spans: otel.exporterOtlpEndpoint, else the umbrella chart's collector when
global.otelCollector.enabled (charts/pulse-stack turns the collector on with that switch), else nowhere.
*/}}
{{- define "pulse.otlpEndpoint" -}}
{{- $collector := dig "otelCollector" dict (.Values.global | default dict) }}
{{- if .Values.otel.exporterOtlpEndpoint }}
{{- .Values.otel.exporterOtlpEndpoint }}
{{- else if dig "enabled" false $collector }}
{{- required "global.otelCollector.endpoint is required when global.otelCollector.enabled" (dig "endpoint" "" $collector) }}
{{- end }}
{{- end }}

{{/* The bundled PostgreSQL (postgresql.enabled): its name, and labels that are not Pulse's selector. */}}
{{- define "pulse.postgresqlName" -}}
{{- printf "%s-postgresql" (include "pulse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pulse.postgresqlSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pulse.name" . }}-postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pulse.postgresqlLabels" -}}
helm.sh/chart: {{ include "pulse.chart" . }}
{{ include "pulse.postgresqlSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.postgresql.image.tag | quote }}
app.kubernetes.io/component: database
app.kubernetes.io/part-of: pulse
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The Secret and key holding Pulse's database URL: the bundled PostgreSQL's, or
database.existingSecret's; empty when Pulse keeps its data in memory.
*/}}
{{- define "pulse.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- include "pulse.postgresqlName" . }}
{{- else if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "pulse.databaseSecretKey" -}}
{{- if .Values.postgresql.enabled }}uri{{ else }}{{ .Values.database.existingSecretKey }}{{ end }}
{{- end }}

{{/* The bundled Redis (redis.enabled): its name, and labels that are not Pulse's selector. */}}
{{- define "pulse.redisName" -}}
{{- printf "%s-redis" (include "pulse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pulse.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pulse.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pulse.redisLabels" -}}
helm.sh/chart: {{ include "pulse.chart" . }}
{{ include "pulse.redisSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.redis.image.tag | quote }}
app.kubernetes.io/component: cache
app.kubernetes.io/part-of: pulse
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The Secret and key holding the Redis password: cache.existingSecret's, else the bundled Redis's
generated one; empty for a Redis of your own without a password.
*/}}
{{- define "pulse.redisSecret" -}}
{{- if .Values.cache.existingSecret }}
{{- .Values.cache.existingSecret }}
{{- else if .Values.redis.enabled }}
{{- include "pulse.redisName" . }}
{{- end }}
{{- end }}

{{- define "pulse.redisSecretKey" -}}
{{- if .Values.cache.existingSecret }}{{ .Values.cache.existingSecretKey }}{{ else }}password{{ end }}
{{- end }}

{{/*
PULSE_REDIS_URL: the bundled Redis's Service, or cache.redisUrl; with a password, it is written in as
`$(REDIS_PASSWORD)`, which the kubelet replaces with the REDIS_PASSWORD variable (from the Secret) set
before it: the password never appears in the Deployment. Empty: no cache. Refuses a cache without the
PostgreSQL store it fronts, and a password Secret with no Redis to use it for.
*/}}
{{- define "pulse.redisUrl" -}}
{{- $cache := .Values.cache }}
{{- if and (or .Values.redis.enabled $cache.redisUrl) (not (include "pulse.databaseSecret" .)) }}
{{- fail "the Redis cache fronts the PostgreSQL store: with redis.enabled or cache.redisUrl, set postgresql.enabled or database.existingSecret too (Pulse keeps its data in memory otherwise, and there is nothing to cache)" }}
{{- end }}
{{- if and $cache.existingSecret (not (or .Values.redis.enabled $cache.redisUrl)) }}
{{- fail "cache.existingSecret holds a Redis password: set redis.enabled (the bundled Redis) or cache.redisUrl (a Redis of your own) too" }}
{{- end }}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (ne (include "pulse.redisSecret" .) "") }}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s%s:6379/0" $auth (include "pulse.redisName" .) }}
{{- else if $cache.redisUrl }}
{{- $parts := splitn "://" 2 $cache.redisUrl }}
{{- printf "%s://%s%s" $parts._0 $auth $parts._1 }}
{{- end }}
{{- end }}
