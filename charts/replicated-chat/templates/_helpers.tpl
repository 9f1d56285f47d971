{{- define "replicated-chat.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "replicated-chat.selectorLabels" -}}
app.kubernetes.io/name: chat-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "replicated-chat.labels" -}}
{{ include "replicated-chat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: replicated-chat
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "replicated-chat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "replicated-chat.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
