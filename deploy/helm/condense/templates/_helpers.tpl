{{/* Chart name, truncated to the 63 characters Kubernetes allows. */}}
{{- define "condense.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the component is appended with "-<component>" by callers. */}}
{{- define "condense.fullname" -}}
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

{{- define "condense.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "condense.labels" -}}
helm.sh/chart: {{ include "condense.chart" . }}
{{ include "condense.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "condense.selectorLabels" -}}
app.kubernetes.io/name: {{ include "condense.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "condense.componentLabels" -}}
{{ include "condense.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "condense.componentSelector" -}}
{{ include "condense.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "condense.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "condense.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "condense.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "condense.workerImage" -}}
{{- printf "%s:%s" .Values.worker.image.repository (default .Chart.AppVersion .Values.worker.image.tag) }}
{{- end }}

{{/* The Secret holding credentials: the user's, or the chart's. */}}
{{- define "condense.secretName" -}}
{{- default (printf "%s-secrets" (include "condense.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "condense.configMapName" -}}
{{- printf "%s-config" (include "condense.fullname" .) }}
{{- end }}

{{/* Ports, read from the settings so the chart and the processes agree. */}}
{{- define "condense.gatewayPort" -}}
{{- dig "gateway" "port" 8000 .Values.config }}
{{- end }}

{{- define "condense.workerMetricsPort" -}}
{{- dig "worker" "metrics_port" 9101 .Values.config }}
{{- end }}

{{- define "condense.relayMetricsPort" -}}
{{- dig "relay" "metrics_port" 9103 .Values.config }}
{{- end }}

{{- define "condense.notifierMetricsPort" -}}
{{- dig "notifier" "metrics_port" 9102 .Values.config }}
{{- end }}

{{/* The settings file. */}}
{{- define "condense.configData" -}}
condense.yaml: |
{{- toYaml .Values.config | nindent 2 }}
{{- end }}

{{/* Secret data: only keys with a value, so an unset SMTP user stays unset (not ""). */}}
{{- define "condense.secretData" -}}
database-url: {{ required "secrets.databaseUrl is required (or set secrets.existingSecret)" .Values.secrets.databaseUrl | b64enc | quote }}
celery-broker-url: {{ required "secrets.celeryBrokerUrl is required (or set secrets.existingSecret)" .Values.secrets.celeryBrokerUrl | b64enc | quote }}
{{- with .Values.secrets.smtp.username }}
smtp-username: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.smtp.password }}
smtp-password: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.webhookSecrets }}
webhook-secrets: {{ toJson . | b64enc | quote }}
{{- end }}
{{- with .Values.secrets.bootstrapApiKeys }}
bootstrap-api-keys: {{ include "condense.bootstrapApiKeys" . | trim | b64enc | quote }}
{{- end }}
{{- end }}

{{- define "condense.bootstrapApiKeys" -}}
{{- range . }}
{{ required "secrets.bootstrapApiKeys[].tenant is required" .tenant }}:{{ required "secrets.bootstrapApiKeys[].key is required" .key }}
{{- end }}
{{- end }}

{{/* Environment shared by every condense container. */}}
{{- define "condense.env" -}}
- name: CONDENSE_CONFIG
  value: /etc/condense/condense.yaml
- name: CONDENSE_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "condense.secretName" . }}
      key: database-url
- name: CONDENSE_CELERY__BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "condense.secretName" . }}
      key: celery-broker-url
- name: CONDENSE_NOTIFIER__SMTP__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "condense.secretName" . }}
      key: smtp-username
      optional: true
- name: CONDENSE_NOTIFIER__SMTP__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "condense.secretName" . }}
      key: smtp-password
      optional: true
- name: CONDENSE_NOTIFIER__WEBHOOK_SECRETS
  valueFrom:
    secretKeyRef:
      name: {{ include "condense.secretName" . }}
      key: webhook-secrets
      optional: true
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "condense.volumeMounts" -}}
- name: config
  mountPath: /etc/condense
  readOnly: true
- name: data
  mountPath: /var/lib/condense
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* (dict "root" $ "data" <volume source map>) */}}
{{- define "condense.volumes" -}}
- name: config
  configMap:
    name: {{ include "condense.configMapName" .root }}
- name: data
  {{- toYaml .data | nindent 2 }}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* Pod annotations that roll the pods when the settings or the chart's Secret change. */}}
{{- define "condense.podAnnotations" -}}
checksum/config: {{ include "condense.configData" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "condense.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/* HTTP probes on a named port. */}}
{{- define "condense.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: {{ .startupFailures | default 30 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}
