#!/usr/bin/env bash
# Checks the chart's alerts: renders helm/toque with prometheusRule.enabled=true (release
# `toque` in `toque-system`, so the operator's job is toque-operator-metrics), takes the
# PrometheusRule's spec (its `groups`) as a plain Prometheus rules file, then runs
# `promtool check rules` on it and `promtool test rules` with every unit test file of
# tests/alerts/ (synthetic series: each alert fires when it should, and only then). Called by
# `make alerts` (part of `make lint`); needs no cluster, a few seconds once the tools are built.
# helm and promtool come from TOQUE_TOOLS_BIN when the caller built the tools, else from
# hack/build-tools.sh (cached: a second run costs nothing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHART="$ROOT/helm/toque"
TESTS="$ROOT/tests/alerts"
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
PYTHON="${PYTHON:-python3}"
log() { echo "[check-alerts] $*" >&2; }

if [[ -n "${TOQUE_TOOLS_BIN:-}" && -x "$TOQUE_TOOLS_BIN/promtool" && -x "$TOQUE_TOOLS_BIN/helm" ]]; then
  bin="$TOQUE_TOOLS_BIN"
else
  bin="$(bash "$ROOT/hack/build-tools.sh" | tail -n1)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin/helm" template toque "$CHART" --namespace toque-system --kube-version "$KUBE_VERSION" \
  --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$work/rendered.yaml"
# The test files name rules.yaml relative to themselves: they are copied next to it.
"$PYTHON" - "$work/rendered.yaml" "$work/rules.yaml" <<'PY'
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
if len(rules) != 1:
    sys.exit(f"expected one PrometheusRule in the chart, found {len(rules)}")


def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line expressions stay readable blocks, as in the template.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


yaml.SafeDumper.add_representer(str, text)
with open(sys.argv[2], "w") as out:
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, out, sort_keys=False, width=1000)
PY
"$bin/promtool" check rules "$work/rules.yaml"
# For tests/unit/test_alert_rules.py, which breaks each rule in turn to see a test fail.
if [[ -n "${TOQUE_ALERT_RULES_OUT:-}" ]]; then cp "$work/rules.yaml" "$TOQUE_ALERT_RULES_OUT"; fi

shopt -s nullglob
tests=("$TESTS"/*.yaml)
[[ ${#tests[@]} -gt 0 ]] || { log "no unit test file in $TESTS"; exit 1; }
cp "${tests[@]}" "$work/"
names=()
for t in "${tests[@]}"; do names+=("$work/$(basename "$t")"); done
"$bin/promtool" test rules "${names[@]}"

# Every alert of the chart has a unit test: a positive case (exp_alerts) and a negative one
# (an eval with no exp_alerts).
"$PYTHON" - "$work/rules.yaml" "${names[@]}" <<'PY'
import sys

import yaml

alerts = [
    r["alert"]
    for g in yaml.safe_load(open(sys.argv[1]))["groups"]
    for r in g["rules"]
    if "alert" in r
]
fires: set[str] = set()
silent: set[str] = set()
for path in sys.argv[2:]:
    for group in yaml.safe_load(open(path))["tests"]:
        for case in group.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
missing = [
    f"{a}: no {kind} case"
    for a in alerts
    for kind, seen in (("firing", fires), ("silent", silent))
    if a not in seen
]
unknown = sorted((fires | silent) - set(alerts))
if missing or unknown:
    sys.exit("; ".join(missing + [f"{u}: tested but not in the chart" for u in unknown]))
print(f"{len(alerts)} alerts, each with a firing and a silent case")
PY
