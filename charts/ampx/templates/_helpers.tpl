{{/* The chart name. */}}
{{- define "ampx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: the release name unless fullnameOverride is set, so that the
worker's ServiceAccount is "<release>-worker".
*/}}
{{- define "ampx.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Names of cluster-scoped objects also carry the release namespace: they must be unique. */}}
{{- define "ampx.clusterName" -}}
{{- printf "%s-%s" (include "ampx.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "ampx.operatorName" -}}
{{- printf "%s-operator" (include "ampx.fullname" .) -}}
{{- end -}}

{{- define "ampx.workerName" -}}
{{- printf "%s-worker" (include "ampx.fullname" .) -}}
{{- end -}}

{{- define "ampx.historyClaim" -}}
{{- default (printf "%s-history" (include "ampx.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{- define "ampx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ampx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ampx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ampx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ampx
{{- end -}}

{{/* "repository:tag", the tag defaulting to the chart's appVersion. Argument: (list $ image). */}}
{{- define "ampx.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/*
The namespaces AmpTasks run in, as a JSON list: watchNamespaces, or the release namespace.
The worker's ServiceAccount and RBAC are created in each; without clusterWide the operator
watches exactly these.
*/}}
{{- define "ampx.taskNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- .Values.watchNamespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* One of the rule lists of files/rbac.yaml (generated from ampx/kube/rbac.py). */}}
{{- define "ampx.rules" -}}
{{- $root := index . 0 -}}
{{- $who := index . 1 -}}
{{- $all := $root.Files.Get "files/rbac.yaml" | fromYaml -}}
{{- $rules := get $all $who -}}
{{- if not $rules -}}
{{- fail (printf "files/rbac.yaml has no %q rules: run python tests/packaging/sync_chart.py" $who) -}}
{{- end -}}
{{- toYaml $rules | replace "<agent-key-secret>" $root.Values.amp.secret.name -}}
{{- end -}}

{{- define "ampx.webhooksName" -}}
{{- printf "%s-webhooks" (include "ampx.fullname" .) -}}
{{- end -}}
