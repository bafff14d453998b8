{{/* Egress rules shared by the NetworkPolicies (networkpolicies-egress.yaml, -populators.yaml). */}}

{{/* The labels every populator pod carries (shared/populator/keys.py). */}}
{{- define "hoist.populatorSelector" -}}
app.kubernetes.io/managed-by: hoist
app.kubernetes.io/component: populator
{{- end }}

{{/* One egress rule: (dict "to" peers "ports" ports "protocols" list); no peers: anywhere. */}}
{{- define "hoist.egressRule" -}}
- ports:
    {{- range $port := .ports }}
    {{- range $protocol := ($.protocols | default (list "TCP")) }}
    - port: {{ $port }}
      protocol: {{ $protocol }}
    {{- end }}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "hoist.egressDns" -}}
{{- $np := .Values.networkPolicy -}}
# Name resolution.
{{ include "hoist.egressRule" (dict "to" $np.dns.to "ports" $np.dns.ports "protocols" (list "UDP" "TCP")) }}
{{- end }}

{{- define "hoist.egressApiServer" -}}
{{- $np := .Values.networkPolicy -}}
# The Kubernetes API server(s).
{{ include "hoist.egressRule" (dict "to" $np.apiServer.to "ports" $np.apiServer.ports) }}
{{- end }}

{{- define "hoist.egressSources" -}}
{{- $np := .Values.networkPolicy -}}
# The sources: oVirt engines and their imageio, OpenStack endpoints.
{{ include "hoist.egressRule" (dict "to" $np.sources.to "ports" $np.sources.ports) }}
{{- end }}

{{- define "hoist.egressNats" -}}
{{- $np := .Values.networkPolicy -}}
# NATS.
{{- if .Values.nats.bundled.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "hoist.selectorLabels" (dict "root" . "component" "nats") | nindent 10 }}
  ports:
    - port: 4222
      protocol: TCP
{{- else }}
{{ include "hoist.egressRule" (dict "to" $np.nats.to "ports" $np.nats.ports) }}
{{- end }}
{{- end }}

{{- define "hoist.egressPostgresql" -}}
{{- $np := .Values.networkPolicy -}}
# PostgreSQL.
{{- if .Values.postgresql.bundled.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "hoist.selectorLabels" (dict "root" . "component" "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else }}
{{ include "hoist.egressRule" (dict "to" $np.postgresql.to "ports" $np.postgresql.ports) }}
{{- end }}
{{- end }}
