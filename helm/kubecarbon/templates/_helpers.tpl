{{/* Chart name, shortened to fit label values. */}}
{{- define "kubecarbon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: the release name, plus the chart name when the release name lacks it. */}}
{{- define "kubecarbon.fullname" -}}
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

{{- define "kubecarbon.agentName" -}}
{{- printf "%s-agent" (include "kubecarbon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubecarbon.collectorName" -}}
{{- printf "%s-collector" (include "kubecarbon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubecarbon.tokenSecretName" -}}
{{- default (printf "%s-token" (include "kubecarbon.fullname" .)) .Values.token.existingSecret }}
{{- end }}

{{/* The collector's image. */}}
{{- define "kubecarbon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The agent's image (the Dockerfile's `agent` target). */}}
{{- define "kubecarbon.agentImage" -}}
{{- $image := .Values.agent.image }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "kubecarbon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubecarbon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubecarbon
{{- end }}

{{/* Selector labels of one component ("agent" or "collector"); pass (dict "root" $ "component" "agent"). */}}
{{- define "kubecarbon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubecarbon.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* In-cluster URL agents post to. */}}
{{- define "kubecarbon.collectorURL" -}}
{{- printf "%s://%s:%d" (ternary "https" "http" .Values.tls.enabled) (include "kubecarbon.collectorServiceName" .) (int .Values.collector.port) }}
{{- end }}

{{/* The collector Service's DNS name, which its certificate should carry. */}}
{{- define "kubecarbon.collectorServiceName" -}}
{{- printf "%s.%s.svc" (include "kubecarbon.collectorName" .) .Release.Namespace }}
{{- end }}

{{/* The name agents and Prometheus check in the collector's certificate. */}}
{{- define "kubecarbon.tlsServerName" -}}
{{- default (include "kubecarbon.collectorServiceName" .) .Values.tls.serverName }}
{{- end }}

{{/* The TLS Secret's name; fails the render when TLS is on without one. */}}
{{- define "kubecarbon.tlsSecretName" -}}
{{- required "tls.enabled needs tls.secretName: a Secret of type kubernetes.io/tls with tls.crt and tls.key (e.g. from a cert-manager Certificate)" .Values.tls.secretName }}
{{- end }}

{{/* The volume with the CA bundle, under the file name ca.crt: agents verify the collector
with it, and collector replicas serving HTTPS verify each other. */}}
{{- define "kubecarbon.caVolume" -}}
{{- $ca := .Values.tls.ca }}
{{- if $ca.configMapName }}
configMap:
  name: {{ $ca.configMapName }}
  items:
    - key: {{ $ca.key }}
      path: ca.crt
{{- else }}
secret:
  secretName: {{ default (include "kubecarbon.tlsSecretName" .) $ca.secretName }}
  items:
    - key: {{ $ca.key }}
      path: ca.crt
{{- end }}
{{- end }}

{{/* The CA bundle for a prometheus-operator tlsConfig (SafeTLSConfig.ca). */}}
{{- define "kubecarbon.monitorTLSConfig" -}}
{{- $ca := .Values.tls.ca }}
ca:
  {{- if $ca.configMapName }}
  configMap:
    name: {{ $ca.configMapName }}
    key: {{ $ca.key }}
  {{- else }}
  secret:
    name: {{ default (include "kubecarbon.tlsSecretName" .) $ca.secretName }}
    key: {{ $ca.key }}
  {{- end }}
serverName: {{ include "kubecarbon.tlsServerName" . }}
{{- end }}

{{/* The token file path inside both containers. */}}
{{- define "kubecarbon.tokenDir" -}}/etc/kubecarbon/token{{- end }}

{{/* Where the collector's certificate and the agents' CA bundle are mounted. */}}
{{- define "kubecarbon.tlsDir" -}}/etc/kubecarbon/tls{{- end }}

{{/* Where collector replicas find the CA bundle they verify each other with. */}}
{{- define "kubecarbon.peerCADir" -}}/etc/kubecarbon/peer-ca{{- end }}

{{/* Container security settings both components share; RAPL changes only the user (agent). */}}
{{- define "kubecarbon.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}
