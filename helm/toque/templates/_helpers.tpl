{{- /*
Named templates every manifest of the chart uses: names, the image reference and the labels.
*/ -}}

{{- define "toque.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "toque.serviceAccountName" -}}
{{- default (include "toque.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- /* A digest, when set, pins the exact image; the tag then only documents it. */ -}}
{{- define "toque.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /*
The recommended labels (app.kubernetes.io/*), on every object the chart renders and on the
operator's pods. Called with the root context for the operator's own objects, or with
(dict "root" $ "component" "monitoring") for an object that belongs to another part of the
installation; tests/unit/test_chart_labels.py checks every rendered object carries them.
*/ -}}
{{- define "toque.labels" -}}
{{- $root := . -}}
{{- $component := "operator" -}}
{{- if hasKey . "root" -}}
{{- $root = .root -}}
{{- $component = .component -}}
{{- end -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: toque
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ $component }}
app.kubernetes.io/part-of: toque
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end -}}

{{- /* A subset of the labels above that never changes across upgrades: selectors are immutable. */ -}}
{{- define "toque.selectorLabels" -}}
app.kubernetes.io/name: toque
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
