#!/usr/bin/env bash
# Lints the Helm chart: `helm lint --strict`, then renders it three ways (default values; every
# optional feature on, i.e. each `enabled` key of values.yaml set to true, with a pinned image
# digest; the same in namespaced mode, Roles instead of ClusterRoles) and scans the manifests
# with checkov, a Kubernetes security linter, which fails on any finding that is neither fixed
# nor skipped with a reason in a `checkov.io/skipN` annotation. Called by `make lint-chart`
# (part of `make lint`).
#
# checkov lives in its own virtualenv (its pins clash with ours) in the same cache as
# hack/build-tools.sh, keyed by its version, the hash of hack/checkov-constraints.txt (every
# transitive pin) and the Python version: a second run costs only the scan (~10 s). kube-linter,
# the Go alternative, is not served by the Go module proxy under its module path.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHART="$ROOT/helm/toque"
CONSTRAINTS="$ROOT/hack/checkov-constraints.txt"
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
PYTHON="${PYTHON:-python3}"
CACHE_ROOT="${TOQUE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toque/tools}"
log() { echo "[lint-chart] $*" >&2; }

# helm: from TOQUE_TOOLS_BIN when the caller built the tools, else from the tools' cache.
if [[ -n "${TOQUE_TOOLS_BIN:-}" && -x "$TOQUE_TOOLS_BIN/helm" ]]; then
  helm="$TOQUE_TOOLS_BIN/helm"
else
  helm="$(bash "$ROOT/hack/build-tools.sh" | tail -n1)/helm"
fi

checkov_version="$(sed -n 's/^checkov==//p' "$CONSTRAINTS")"
[[ -n "$checkov_version" ]] || { log "no checkov== pin in $CONSTRAINTS"; exit 1; }
py="$("$PYTHON" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')"
pins="$(sha256sum "$CONSTRAINTS" | cut -c1-12)"
VENV="$CACHE_ROOT/checkov-${checkov_version}-${pins}-${py}-$(uname -s)-$(uname -m)"
# A virtualenv cannot be moved, so it is built in place; .complete marks a finished install.
if [[ ! -f "$VENV/.complete" ]]; then
  log "installing checkov ${checkov_version} into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS" "checkov==${checkov_version}"
  touch "$VENV/.complete"
fi

# Every optional feature: each `<path>.enabled` key of values.yaml (block mappings only), so a
# feature added later is scanned without an edit here.
features="$(awk '
  /^[[:space:]]*(#|$)/ { next }
  {
    match($0, /^ */); indent = RLENGTH; line = substr($0, indent + 1)
    if (line !~ /^[A-Za-z0-9_]+:/) next
    key = line; sub(/:.*/, "", key)
    while (depth > 0 && at[depth] >= indent) depth--
    at[++depth] = indent; name[depth] = key
    if (key == "enabled") {
      path = name[1]; for (i = 2; i <= depth; i++) path = path "." name[i]
      printf "%s%s=true", sep, path; sep = ","
    }
  }' "$CHART/values.yaml")"
digest="sha256:$(printf '%064d' 0)"
all=(--set "$features" --set "image.digest=$digest")
log "optional features on: ${features//,/ }"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$helm" lint --strict --quiet "$CHART" >&2
"$helm" lint --strict --quiet "$CHART" "${all[@]}" >&2
# One file per template (--output-dir), so a finding names the template it comes from, e.g.
# all-features/toque/templates/deployment.yaml.
render() {
  local out="$1"
  shift
  "$helm" template toque "$CHART" --namespace toque-system --kube-version "$KUBE_VERSION" \
    --include-crds --output-dir "$work/$out" "$@" >/dev/null
}
render defaults
render all-features "${all[@]}"
render namespaced "${all[@]}" --set 'operator.watchNamespaces={team-a,team-b}'

# --skip-download and the update-check switch: the scan needs no network (and has none in CI).
CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$VENV/bin/checkov" --framework kubernetes --directory "$work" \
  --skip-download --compact --quiet
echo "checkov ${checkov_version}: the chart's three renders pass"
