#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), etcd and kwok from Go modules at pinned versions into a cache
# outside the repository, keyed by those versions. A second run with the same pins is a no-op.
# Called by `make tools` (and so by `.ci/run`, `make test`, `make up`).
# Prints the bin directory on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.6}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
CACHE_ROOT="${TOQUE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toque/tools}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_$(go env GOOS)-$(go env GOARCH)"
BIN="$CACHE_ROOT/$KEY/bin"
STAMP="$CACHE_ROOT/$KEY/.complete"
NEEDED=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

if [[ -f "$STAMP" ]]; then
  echo "$BIN"
  exit 0
fi

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BIN.partial"
log() { echo "[build-tools] $*" >&2; }

build_k8s() {
  # k8s.io/kubernetes replaces its staging modules with local paths; those replaces do not
  # apply to a dependent module, so the wrapper maps each staging module to its v0.X tag.
  local minor="${K8S_VERSION#v1.}"
  local staging_version="v0.${minor}"
  local dir="$WORK/k8s"
  mkdir -p "$dir"
  cd "$dir"
  go mod init toque.dev/k8s-tools >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  local mods
  mods="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}')"
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo "replace ("
    for m in $mods; do echo "  $m => $m ${staging_version}"; done
    echo ")"
  } >>go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  local ver="k8s.io/component-base/version"
  local cver="k8s.io/client-go/pkg/version"
  local ldflags="-s -w"
  for p in "$ver" "$cver"; do
    ldflags+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean"
  done
  log "building kubernetes ${K8S_VERSION} (this takes a while on a cold cache)"
  go build -trimpath -ldflags "$ldflags" -o "$BIN.partial/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl >&2
}

build_etcd() {
  local dir="$WORK/etcd"
  mkdir -p "$dir"
  cd "$dir"
  go mod init toque.dev/etcd-tool >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  go mod tidy >&2
  log "building etcd ${ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$BIN.partial/etcd" . >&2
}

build_kwok() {
  local dir="$WORK/kwok"
  mkdir -p "$dir"
  cd "$dir"
  go mod init toque.dev/kwok-tool >/dev/null 2>&1
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
GO
  go get "sigs.k8s.io/kwok@${KWOK_VERSION}" >&2
  go mod tidy >&2
  log "building kwok ${KWOK_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$BIN.partial/kwok" sigs.k8s.io/kwok/cmd/kwok >&2
}

[[ -x "$BIN.partial/etcd" ]] || build_etcd
[[ -x "$BIN.partial/kwok" ]] || build_kwok
[[ -x "$BIN.partial/kubectl" ]] || build_k8s

for b in "${NEEDED[@]}"; do
  [[ -x "$BIN.partial/$b" ]] || { log "missing $b after build"; exit 1; }
done
rm -rf "$BIN"
mv "$BIN.partial" "$BIN"
touch "$STAMP"
echo "$BIN"
