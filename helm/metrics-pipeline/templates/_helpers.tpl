{{/* Names and labels ----------------------------------------------------------------------- */}}

{{- define "mp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mp.fullname" -}}
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

{{- define "mp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mp.labels" -}}
helm.sh/chart: {{ include "mp.chart" . }}
app.kubernetes.io/name: {{ include "mp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: metrics-pipeline
{{- end -}}

{{/* Selector labels of one workload: dict "root" $ "workload" <workload name suffix> */}}
{{- define "mp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .workload }}
{{- end -}}

{{- define "mp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "mp.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Where secrets and config land in every pod. */}}
{{- define "mp.configDir" -}}/etc/metrics-pipeline/config{{- end -}}
{{- define "mp.kafkaTlsDir" -}}/etc/metrics-pipeline/kafka-tls{{- end -}}
{{- define "mp.httpTlsDir" -}}/etc/metrics-pipeline/http-tls{{- end -}}
{{- define "mp.httpTokenDir" -}}/etc/metrics-pipeline/http-token{{- end -}}
{{- define "mp.storeDir" -}}/var/lib/metrics-pipeline/store{{- end -}}

{{/* Settings files ---------------------------------------------------------------------------- */}}

{{/* librdkafka settings (non-secret): security.protocol from sasl/tls unless kafka.config sets it;
     the SASL username and password come from the environment (see mp.kafkaEnv). */}}
{{- define "mp.kafkaConfig" -}}
{{- $k := .Values.kafka -}}
{{- $sasl := ne $k.sasl.existingSecret "" -}}
{{- $tls := ne $k.tls.existingSecret "" -}}
{{- $cfg := dict -}}
{{- if and $sasl $tls -}}{{- $_ := set $cfg "security.protocol" "SASL_SSL" -}}
{{- else if $sasl -}}{{- $_ := set $cfg "security.protocol" "SASL_PLAINTEXT" -}}
{{- else if $tls -}}{{- $_ := set $cfg "security.protocol" "SSL" -}}
{{- end -}}
{{- if $sasl -}}{{- $_ := set $cfg "sasl.mechanism" $k.sasl.mechanism -}}{{- end -}}
{{- if $tls -}}
{{- $_ := set $cfg "ssl.ca.location" (printf "%s/%s" (include "mp.kafkaTlsDir" .) $k.tls.caKey) -}}
{{- if $k.tls.certKey -}}
{{- $_ := set $cfg "ssl.certificate.location" (printf "%s/%s" (include "mp.kafkaTlsDir" .) $k.tls.certKey) -}}
{{- $_ := set $cfg "ssl.key.location" (printf "%s/%s" (include "mp.kafkaTlsDir" .) $k.tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $k.config)) -}}
{{- end -}}

{{/* The keys every process's settings file shares (CommonSettings). */}}
{{- define "mp.commonSettings" -}}
bootstrap_servers: {{ .Values.kafka.bootstrapServers | quote }}
kafka_config:
  {{- include "mp.kafkaConfig" . | nindent 2 }}
http_host: 0.0.0.0
http_port: {{ .Values.httpPort }}
log_level: {{ .Values.logging.level }}
log_format: {{ .Values.logging.format }}
{{- end -}}

{{/* The topic names, the same keys in every settings file (pipeline/kafka/topology.py): each
     process derives the names it uses from them, `topics create` makes all of them. */}}
{{- define "mp.topicNames" -}}
input_topic: {{ .Values.topics.raw | quote }}
rollup_topic_prefix: {{ .Values.topics.rollupPrefix | quote }}
deadletter_topic: {{ .Values.topics.deadletter | quote }}
checkpoint_topic: {{ .Values.topics.checkpoints | quote }}
anomaly_topic: {{ .Values.topics.anomalies | quote }}
chain: {{ toJson .Values.tier.chain }}
{{- end -}}

{{/* Topic keys of every consumer-group process: the names, and whether it creates topics. */}}
{{- define "mp.topicSettings" -}}
{{ include "mp.topicNames" . }}
create_topics: {{ .Values.topics.createMissing }}
topic_partitions: {{ .Values.topics.partitions }}
{{- end -}}

{{/* HTTP client auth keys (remote-write, Alertmanager): dict "root" $ "auth" <auth block> */}}
{{- define "mp.httpAuthSettings" -}}
{{- $a := .auth -}}
{{- if $a.basicAuth.existingSecret }}
basic_auth_username: {{ $a.basicAuth.username | quote }}
{{- end }}
{{- if $a.bearerToken.existingSecret }}
bearer_token_file: {{ printf "%s/%s" (include "mp.httpTokenDir" .root) $a.bearerToken.key }}
{{- end }}
{{- if $a.tls.existingSecret }}
tls_ca_file: {{ printf "%s/%s" (include "mp.httpTlsDir" .root) $a.tls.caKey }}
{{- if $a.tls.certKey }}
tls_cert_file: {{ printf "%s/%s" (include "mp.httpTlsDir" .root) $a.tls.certKey }}
tls_key_file: {{ printf "%s/%s" (include "mp.httpTlsDir" .root) $a.tls.keyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* One settings file: dict "root" $ "own" <yaml of the process's keys> "config" <user config>.
     Later wins: common < the chart's keys < the user's `config`. */}}
{{- define "mp.settingsFile" -}}
{{- $common := include "mp.commonSettings" .root | fromYaml -}}
{{- $own := .own | fromYaml -}}
{{- toYaml (mustMergeOverwrite $common $own (deepCopy .config)) -}}
{{- end -}}

{{/* Environment ------------------------------------------------------------------------------- */}}

{{/* SASL credentials from the existing Secret, spliced into METRICS_PIPELINE_KAFKA_CONFIG (JSON,
     deep-merged over kafka_config from the settings file) by Kubernetes' $(VAR) expansion. */}}
{{- define "mp.kafkaEnv" -}}
{{- $s := .Values.kafka.sasl -}}
{{- if $s.existingSecret }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $s.existingSecret | quote }}, key: {{ $s.usernameKey | quote }}}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $s.existingSecret | quote }}, key: {{ $s.passwordKey | quote }}}
- name: METRICS_PIPELINE_KAFKA_CONFIG
  value: '{"sasl.username": "$(KAFKA_SASL_USERNAME)", "sasl.password": "$(KAFKA_SASL_PASSWORD)"}'
{{- end }}
{{- end -}}

{{- define "mp.httpAuthEnv" -}}
{{- if .basicAuth.existingSecret }}
- name: METRICS_PIPELINE_BASIC_AUTH_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .basicAuth.existingSecret | quote }}, key: {{ .basicAuth.passwordKey | quote }}}
{{- end }}
{{- end -}}

{{/* Volumes of the HTTP client's secrets: dict "root" $ "auth" <auth block> "mounts" bool */}}
{{- define "mp.httpAuthVolumes" -}}
{{- if .auth.bearerToken.existingSecret }}
{{- if .mounts }}
- {name: http-token, mountPath: {{ include "mp.httpTokenDir" .root }}, readOnly: true}
{{- else }}
- name: http-token
  secret: {secretName: {{ .auth.bearerToken.existingSecret | quote }}}
{{- end }}
{{- end }}
{{- if .auth.tls.existingSecret }}
{{- if .mounts }}
- {name: http-tls, mountPath: {{ include "mp.httpTlsDir" .root }}, readOnly: true}
{{- else }}
- name: http-tls
  secret: {secretName: {{ .auth.tls.existingSecret | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/* The workloads ----------------------------------------------------------------------------- */}}

{{/* One entry per workload to run: its name suffix, kind, settings file, arguments, replicas,
     the partitions that bound its replicas, and the values block of its process. */}}
{{- define "mp.workloads" -}}
{{- $cfg := include "mp.configDir" . -}}
{{- if .Values.worker.enabled }}
- name: worker
  process: worker
  kind: Deployment
  args: [worker, --config, {{ $cfg }}/worker.yaml]
  replicas: {{ .Values.worker.replicas }}
  partitions: {{ .Values.topics.rawPartitions }}
  partitionsFrom: topics.rawPartitions
  valuesKey: worker
{{- end }}
{{- if .Values.tier.enabled }}
{{- if eq .Values.tier.mode "chain" }}
- name: tier
  process: tier
  kind: Deployment
  args: [tier, --config, {{ $cfg }}/tier.yaml]
  replicas: {{ .Values.tier.replicas }}
  partitions: {{ .Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: tier
{{- else }}
{{- $idle := int .Values.tier.idleTimeoutSeconds -}}
{{- $chain := .Values.tier.chain -}}
{{- range $i, $to := rest $chain }}
{{- $from := index $chain $i }}
- name: tier-{{ $to }}
  process: tier
  step: {{ $to | quote }}
  kind: Deployment
  {{- /* Each step's idle timeout doubles, as the chain mode does in one process. */}}
  args: [tier, --config, {{ $cfg }}/tier.yaml, --from, {{ $from | quote }}, --to, {{ $to | quote }}, --idle-timeout, {{ printf "%ds" $idle | quote }}]
  replicas: {{ dig $to $.Values.tier.replicas $.Values.tier.stepReplicas }}
  partitions: {{ $.Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: tier
{{- $idle = mul $idle 2 }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.detect.enabled }}
- name: detect
  process: detect
  kind: Deployment
  args: [detect, --config, {{ $cfg }}/detect.yaml]
  replicas: {{ .Values.detect.replicas }}
  partitions: {{ .Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: detect
{{- end }}
{{- if .Values.sinks.remoteWrite.enabled }}
- name: sink-remote-write
  process: sink-remote-write
  kind: Deployment
  args: [sink, remote-write, --config, {{ $cfg }}/sink-remote-write.yaml]
  replicas: {{ .Values.sinks.remoteWrite.replicas }}
  partitions: {{ .Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: sinks.remoteWrite
{{- end }}
{{- if .Values.sinks.local.enabled }}
- name: sink-local
  process: sink-local
  kind: StatefulSet
  args: [sink, local, --config, {{ $cfg }}/sink-local.yaml]
  replicas: 1
  partitions: {{ .Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: sinks.local
{{- end }}
{{- if .Values.alertBridge.enabled }}
- name: alert-bridge
  process: alert-bridge
  kind: Deployment
  args: [alert-bridge, --config, {{ $cfg }}/alert-bridge.yaml]
  replicas: {{ .Values.alertBridge.replicas }}
  partitions: {{ .Values.topics.partitions }}
  partitionsFrom: topics.partitions
  valuesKey: alertBridge
{{- end }}
{{- end -}}

{{/* The values block of a workload: dict "root" $ "key" "sinks.remoteWrite" */}}
{{- define "mp.procValues" -}}
{{- $v := .root.Values -}}
{{- range splitList "." .key -}}{{- $v = index $v . -}}{{- end -}}
{{- toYaml $v -}}
{{- end -}}
