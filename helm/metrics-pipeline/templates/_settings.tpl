{{/* The data of the settings ConfigMap: one <process>.yaml per enabled process. */}}
{{- define "mp.settingsFiles" -}}
{{- if .Values.worker.enabled }}
{{- $w := .Values.worker }}
{{- $own := printf `
group_id: %q
resolution: %q
allowed_lateness: %q
idle_timeout: %q
%s` $w.groupId $w.resolution $w.allowedLateness $w.idleTimeout (include "mp.topicSettings" .) }}
worker.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- if .Values.tier.enabled }}
{{- $w := .Values.tier }}
{{- $own := printf `
group_id: %q
idle_timeout: "%ds"
%s` $w.groupId (int $w.idleTimeoutSeconds) (include "mp.topicSettings" .) }}
tier.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- if .Values.detect.enabled }}
{{- $w := .Values.detect }}
{{- $own := printf `
group_id: %q
resolution: %q
statistics: %s
model: %q
%s` $w.groupId $w.resolution (toJson $w.statistics) $w.model (include "mp.topicSettings" .) }}
detect.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- if .Values.sinks.remoteWrite.enabled }}
{{- $w := .Values.sinks.remoteWrite }}
{{- if not $w.url }}{{ fail "sinks.remoteWrite.url is required when the remote-write sink is enabled" }}{{ end }}
{{- $own := printf `
group_id: %q
url: %q
topics: %s
concurrency: %d
timeout: %q
%s
%s` $w.groupId $w.url (toJson $w.topics) (int $w.concurrency) $w.timeout (include "mp.topicSettings" .) (include "mp.httpAuthSettings" (dict "root" . "auth" $w.auth)) }}
sink-remote-write.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- if .Values.sinks.local.enabled }}
{{- $w := .Values.sinks.local }}
{{- $own := printf `
group_id: %q
%s
path: %q
%s` $w.groupId (ternary (printf "topics: %s" (toJson $w.topics)) "" (gt (len $w.topics) 0)) (include "mp.storeDir" .) (include "mp.topicSettings" .) }}
sink-local.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- if .Values.alertBridge.enabled }}
{{- $w := .Values.alertBridge }}
{{- if not $w.alertmanagerUrl }}{{ fail "alertBridge.alertmanagerUrl is required when the alert bridge is enabled" }}{{ end }}
{{- $own := printf `
group_id: %q
alertmanager_url: %q
alertname: %q
%s
%s
%s` $w.groupId $w.alertmanagerUrl $w.alertname (ternary (printf "dashboard_url_template: %q" $w.dashboardUrlTemplate) "" (ne $w.dashboardUrlTemplate "")) (include "mp.topicSettings" .) (include "mp.httpAuthSettings" (dict "root" . "auth" $w.auth)) }}
alert-bridge.yaml: |
  {{- include "mp.settingsFile" (dict "root" . "own" $own "config" $w.config) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The keys a topics Job reads: the connection, the topic names, and the worker's group (it
     names the repartition topic). */}}
{{- define "mp.commonFile" -}}
{{- $common := omit (include "mp.commonSettings" . | fromYaml) "http_host" "http_port" -}}
{{- $names := include "mp.topicNames" . | fromYaml -}}
{{- toYaml (mustMergeOverwrite $common $names (dict "group_id" .Values.worker.groupId)) -}}
{{- end -}}
