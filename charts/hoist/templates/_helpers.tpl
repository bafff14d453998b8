{{/*
Names. The full name is at most 32 characters so that "<fullname>-populator-controller"
stays a valid label value and DNS name (63).
*/}}
{{- define "hoist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 32 | trimSuffix "-" }}
{{- end }}

{{- define "hoist.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 32 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 32 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 32 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The services in the order they are described, then the web console; the controller
comes apart. */}}
{{- define "hoist.services" -}}
{{- list "inventory" "planner" "orchestrator" "progress" "console" | toJson }}
{{- end }}

{{/* The label value and name suffix of a component ("controller" is the populator controller). */}}
{{- define "hoist.componentLabel" -}}
{{- if eq . "controller" }}populator-controller{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Name of a component's objects: (dict "root" $ "component" "inventory") */}}
{{- define "hoist.componentName" -}}
{{- printf "%s-%s" (include "hoist.fullname" .root) (include "hoist.componentLabel" .component) }}
{{- end }}

{{- define "hoist.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "hoist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hoist
{{- end }}

{{/* Labels of a component's objects: (dict "root" $ "component" "inventory") */}}
{{- define "hoist.componentLabels" -}}
{{ include "hoist.labels" .root }}
app.kubernetes.io/component: {{ include "hoist.componentLabel" .component }}
{{- end }}

{{- define "hoist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hoist.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "hoist.componentLabel" .component }}
{{- end }}

{{/* Every pod of this release (NetworkPolicy peers). */}}
{{- define "hoist.releaseSelector" -}}
app.kubernetes.io/name: {{ include "hoist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* An image reference from the registry `global.imageRegistry` names, when it names one
(an air-gapped install's mirror, docs/helm.md): the reference's own registry is replaced,
its path kept (`docker.io/library/nats:2.10-alpine` -> `MIRROR/library/nats:2.10-alpine`);
a reference without a registry is Docker Hub's (`nats` -> `MIRROR/library/nats`). Every
image of the release goes through here. Called with (dict "root" $ "ref" REFERENCE). */}}
{{- define "hoist.mirrored" -}}
{{- $registry := ((.root.Values.global | default dict).imageRegistry | default "") | trimSuffix "/" }}
{{- if $registry }}
{{- $parts := splitList "/" .ref }}
{{- $first := first $parts }}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $parts = rest $parts }}
{{- end }}
{{- if eq (len $parts) 1 }}
{{- $parts = prepend $parts "library" }}
{{- end }}
{{- printf "%s/%s" $registry (join "/" $parts) }}
{{- else }}
{{- .ref }}
{{- end }}
{{- end }}

{{/* The Hoist image: repository@digest, else repository:tag (tag default: appVersion). */}}
{{- define "hoist.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- end }}
{{- include "hoist.mirrored" (dict "root" . "ref" $ref) }}
{{- end }}

{{- define "hoist.populatorImage" -}}
{{- if .Values.populator.image }}
{{- include "hoist.mirrored" (dict "root" . "ref" .Values.populator.image) }}
{{- else }}
{{- include "hoist.image" . }}
{{- end }}
{{- end }}

{{/* A bundled server's image (nats.bundled.image, postgresql.bundled.image). */}}
{{- define "hoist.bundledImage" -}}
{{- include "hoist.mirrored" (dict "root" .root "ref" (printf "%s:%s" .image.repository .image.tag)) }}
{{- end }}

{{- define "hoist.secretName" -}}
{{- include "hoist.fullname" . }}
{{- end }}

{{- define "hoist.natsUrl" -}}
{{- if .Values.nats.bundled.enabled }}
{{- printf "nats://%s-nats.%s.svc:4222" (include "hoist.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "nats.external.url is required when nats.bundled.enabled is false" .Values.nats.external.url }}
{{- end }}
{{- end }}

{{/* A value as an environment variable: whole numbers without an exponent or ".0", lists
comma-separated (what shared/settings.py parses). */}}
{{- define "hoist.envScalar" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{- define "hoist.envValue" -}}
{{- if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (include "hoist.envScalar" .) }}
{{- end }}
{{- join "," $items }}
{{- else }}
{{- include "hoist.envScalar" . }}
{{- end }}
{{- end }}

{{/* `config` with a component's own `config` laid over it, key by key (sprig's
mergeOverwrite would not let a component set false or 0 over a true or a number). */}}
{{- define "hoist.config" -}}
{{- $config := deepCopy (.root.Values.config | default dict) }}
{{- $own := (index .root.Values .component).config | default dict }}
{{- range $group, $fields := $own }}
{{- if not (hasKey $config $group) }}
{{- $_ := set $config $group dict }}
{{- end }}
{{- range $key, $value := $fields }}
{{- $_ := set (index $config $group) $key $value }}
{{- end }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/* A secretKeyRef env entry: (dict "name" "HOIST_X" "secret" "s" "key" "k") */}}
{{- define "hoist.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{/* The container environment of a component: (dict "root" $ "component" "inventory"). */}}
{{- define "hoist.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $secret := include "hoist.secretName" $root }}
{{- $components := include "hoist.generated.components" $root | fromYaml }}
- name: HOIST_HTTP_HOST
  value: {{ $v.listenHost | quote }}
- name: HOIST_KUBE_NAMESPACE
  value: {{ $root.Release.Namespace | quote }}
{{- if ne .component "console" }}
{{- /* The console keeps no state: no NATS, no database, no API tokens (it forwards the
user's). */}}
- name: HOIST_NATS_URL
  value: {{ include "hoist.natsUrl" $root | quote }}
{{- if $v.nats.bundled.enabled }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_NATS_TOKEN" "secret" $secret "key" "nats-token") }}
{{- else }}
{{- with $v.nats.external }}
{{- if .user }}
- name: HOIST_NATS_USER
  value: {{ .user | quote }}
{{- end }}
{{- if and .existingSecret .existingSecretPasswordKey }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_NATS_PASSWORD" "secret" .existingSecret "key" .existingSecretPasswordKey) }}
{{- else if .password }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_NATS_PASSWORD" "secret" $secret "key" "nats-password") }}
{{- end }}
{{- if and .existingSecret .existingSecretTokenKey }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_NATS_TOKEN" "secret" .existingSecret "key" .existingSecretTokenKey) }}
{{- else if .token }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_NATS_TOKEN" "secret" $secret "key" "nats-token") }}
{{- end }}
{{- if .credsSecret }}
- name: HOIST_NATS_CREDS_FILE
  value: {{ printf "/etc/hoist/nats-creds/%s" .credsSecretKey | quote }}
{{- end }}
{{- if .tlsCaSecret }}
- name: HOIST_NATS_TLS_CA_FILE
  value: {{ printf "/etc/hoist/nats-ca/%s" .tlsCaSecretKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (has .component (list "controller" "console")) }}
{{- /* The controller has no database and no API: it gets neither credential. */}}
{{- if and (not $v.postgresql.bundled.enabled) $v.postgresql.external.existingSecret }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_DATABASE_URL" "secret" $v.postgresql.external.existingSecret "key" $v.postgresql.external.existingSecretKey) }}
{{- else }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_DATABASE_URL" "secret" $secret "key" "database-url") }}
{{- end }}
- name: HOIST_AUTH_STATIC
  value: {{ $v.auth.static | quote }}
- name: HOIST_AUTH_KUBERNETES
  value: {{ $v.auth.kubernetes | quote }}
{{- if $v.auth.existingSecret }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_AUTH_TOKENS" "secret" $v.auth.existingSecret "key" $v.auth.existingSecretKey) }}
{{- else }}
{{ include "hoist.secretEnv" (dict "name" "HOIST_AUTH_TOKENS" "secret" $secret "key" "auth-tokens") }}
{{- end }}
{{- end }}
{{- if eq .component "console" }}
{{- range $service := list "inventory" "planner" "orchestrator" "progress" }}
- name: HOIST_CONSOLE_{{ upper $service }}_URL
  value: {{ printf "http://%s.%s.svc:%v" (include "hoist.componentName" (dict "root" $root "component" $service)) $root.Release.Namespace (index $components $service).port | quote }}
{{- end }}
{{- end }}
{{- if and (eq .component "planner") $v.auth.kubernetes }}
{{- /* The planner calls the inventory as itself: its projected ServiceAccount token. */}}
- name: HOIST_PLANNER_INVENTORY_TOKEN_FILE
  value: /var/run/secrets/kubernetes.io/serviceaccount/token
{{- end }}
{{- if eq .component "planner" }}
- name: HOIST_PLANNER_INVENTORY_URL
  value: {{ printf "http://%s.%s.svc:%v" (include "hoist.componentName" (dict "root" $root "component" "inventory")) $root.Release.Namespace $components.inventory.port | quote }}
{{- end }}
{{- if or (eq .component "orchestrator") (eq .component "controller") }}
{{- /* The pipeline's consumer pods and the controller's populator pods run this image. */}}
- name: HOIST_ORCHESTRATOR_POPULATOR_IMAGE
  value: {{ include "hoist.populatorImage" $root | quote }}
- name: HOIST_ORCHESTRATOR_POPULATOR_PULL_POLICY
  value: {{ default $v.image.pullPolicy $v.populator.pullPolicy | quote }}
{{- end }}
{{- if eq .component "controller" }}
- name: HOIST_ORCHESTRATOR_CONTROLLER_PORT
  value: {{ $components.controller.port | quote }}
{{- end }}
{{- $names := include "hoist.generated.configEnv" $root | fromYaml }}
{{- $config := include "hoist.config" . | fromJson }}
{{- $own := list "inventory" "planner" "orchestrator" "progress" "console" }}
{{- $component := .component }}
{{- range $group, $fields := $config }}
{{- /* A service's own group goes to that service only (the orchestrator's also to the
controller); the controller has no database and no API. */}}
{{- $mine := or (not (has $group $own)) (eq $group $component) (and (eq $group "orchestrator") (eq $component "controller")) }}
{{- if and (eq $component "controller") (has $group (list "database" "auth")) }}
{{- $mine = false }}
{{- end }}
{{- if eq $component "console" }}
{{- $mine = has $group (list "http" "log" "console") }}
{{- end }}
{{- if $mine }}
{{- range $key, $value := $fields }}
{{- if and (eq $group "orchestrator") (eq $key "converterImage") (not (kindIs "invalid" $value)) }}
{{- $value = include "hoist.mirrored" (dict "root" $root "ref" $value) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ index $names $group $key }}
  value: {{ include "hoist.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with (index $v .component).extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes every Hoist container mounts: a writable /tmp (the root filesystem is
read-only; kubernetes-asyncio writes a remote cluster's CA and client certificate there)
and the NATS credentials / CA when configured. */}}
{{- define "hoist.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.nats.external }}
{{- if and (not $.Values.nats.bundled.enabled) .credsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .credsSecret }}
    items:
      - key: {{ .credsSecretKey }}
        path: {{ .credsSecretKey }}
{{- end }}
{{- if and (not $.Values.nats.bundled.enabled) .tlsCaSecret }}
- name: nats-ca
  secret:
    secretName: {{ .tlsCaSecret }}
    items:
      - key: {{ .tlsCaSecretKey }}
        path: {{ .tlsCaSecretKey }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hoist.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if not .Values.nats.bundled.enabled }}
{{- if .Values.nats.external.credsSecret }}
- name: nats-creds
  mountPath: /etc/hoist/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.external.tlsCaSecret }}
- name: nats-ca
  mountPath: /etc/hoist/nats-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level hardening (every Hoist pod and the bundled servers). */}}
{{- define "hoist.podSecurityContext" -}}
runAsNonRoot: true
{{- /* Unset ids (null): the platform assigns them (OpenShift's restricted SCCs). */}}
{{- with .runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .fsGroup }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "hoist.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Seconds a pod gets after SIGTERM: the services' own grace plus time to exit. */}}
{{- define "hoist.terminationGrace" -}}
{{- $config := include "hoist.config" . | fromJson }}
{{- $grace := 25 }}
{{- with $config.http }}{{ with .shutdownGraceSeconds }}{{ $grace = . }}{{ end }}{{ end }}
{{- add (ceil $grace | int64) 10 }}
{{- end }}

{{/* Zone and node spread of a replicated component: (dict "root" $ "component" "x"). */}}
{{- define "hoist.topologySpread" -}}
{{- $root := .root }}
{{- $spread := $root.Values.topologySpread }}
{{- range $spread.topologyKeys }}
- maxSkew: {{ $spread.maxSkew }}
  topologyKey: {{ . }}
  whenUnsatisfiable: {{ $spread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "hoist.selectorLabels" $ | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}

{{/* A rendered PDB and spread only make sense with more than one replica. */}}
{{- define "hoist.replicated" -}}
{{- if gt (int (index .root.Values .component).replicas) 1 }}true{{ end }}
{{- end }}
