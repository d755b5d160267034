#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), the node's kubelet and kube-proxy, a pause program, etcd, kwok, helm, the MinIO server and Prometheus (with promtool)
# from Go modules at pinned versions into a cache outside the repository, one directory per tool
# keyed by its version; it also copies the Gateway API's standard-channel CRDs out of their Go
# module. A second run with the same pins costs nothing. Called by the Makefile (`make tools`,
# `make test`, `make up`). Prints, on its last line, a directory with every binary (symlinks
# into the per-tool caches) and `gateway-api-crds`, a directory of CRD manifests.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.6}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
# MinIO publishes RELEASE.* tags that are not semver; the module proxy serves commits as
# pseudo-versions. This one is the newest community commit the proxy listed (2026-02-12).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
# Prometheus 3.x tags its Go module v0.3XX.Y (v0.316.0 is Prometheus 3.16.0).
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.1}"
# Our own pause program (below); bump when its source changes.
PAUSE_VERSION="${PAUSE_VERSION:-v1}"
CACHE_ROOT="${TOQUE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toque/tools}"
command -v go >/dev/null || {
  echo "[build-tools] Go >= 1.24 is needed to build the control plane (no Go on PATH)" >&2
  exit 1
}
PLATFORM="$(go env GOOS)-$(go env GOARCH)"

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0
log() { echo "[build-tools] $*" >&2; }

# new_module DIR NAME: an empty Go module to build one tool in.
new_module() {
  rm -rf "$1" && mkdir -p "$1" && cd "$1"
  go mod init "toque.dev/$2" >/dev/null 2>&1
}

build_k8s() {
  local out="$1" work="$2"
  # k8s.io/kubernetes replaces its staging modules with local paths; those replaces do not
  # apply to a dependent module, so the wrapper maps each staging module to its v0.X tag.
  local minor="${K8S_VERSION#v1.}"
  new_module "$work/k8s" k8s-tools
  local gomod mods
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  mods="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}')"
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo "replace ("
    for m in $mods; do echo "  $m => $m v0.${minor}"; done
    echo ")"
  } >>go.mod
  printf '%s\n' '//go:build tools' '' 'package tools' '' 'import (' \
    '	_ "k8s.io/kubernetes/cmd/kube-apiserver"' \
    '	_ "k8s.io/kubernetes/cmd/kube-controller-manager"' \
    '	_ "k8s.io/kubernetes/cmd/kube-scheduler"' \
    '	_ "k8s.io/kubernetes/cmd/kubectl"' ')' >tools.go
  go mod tidy >&2
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean"
  done
  log "building kubernetes ${K8S_VERSION} (cold: about 15-25 minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl >&2
}

# The node's parts from the same module: kubelet and kube-proxy (the local stack's real node).
build_k8s-node() {
  local out="$1" work="$2"
  local minor="${K8S_VERSION#v1.}"
  new_module "$work/k8s-node" k8s-node-tools
  local gomod mods
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  mods="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}')"
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo "replace ("
    for m in $mods; do echo "  $m => $m v0.${minor}"; done
    echo ")"
  } >>go.mod
  printf '%s\n' '//go:build tools' '' 'package tools' '' 'import (' \
    '	_ "k8s.io/kubernetes/cmd/kubelet"' '	_ "k8s.io/kubernetes/cmd/kube-proxy"' ')' >tools.go
  go mod tidy >&2
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean"
  done
  log "building kubelet and kube-proxy ${K8S_VERSION}"
  go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy >&2
}

# The pod sandbox's process (the default pause image cannot be pulled here): it sleeps until
# told to stop, and reaps children when it is PID 1 of a shared PID namespace.
build_pause() {
  local out="$1" work="$2"
  new_module "$work/pause" pause
  cat >main.go <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 8)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
GO
  log "building pause"
  go build -trimpath -ldflags "-s -w" -o "$out/pause" . >&2
}

build_etcd() {
  local out="$1" work="$2"
  new_module "$work/etcd" etcd-tool
  printf '%s\n' 'package main' '' 'import (' '	"os"' '' \
    '	"go.etcd.io/etcd/server/v3/etcdmain"' ')' '' \
    'func main() { etcdmain.Main(os.Args) }' >main.go
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  go mod tidy >&2
  log "building etcd ${ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" . >&2
}

# build_module OUT WORK NAME MODULE VERSION PACKAGE [LDFLAGS]: a main package of a module.
build_module() {
  local out="$1" work="$2" name="$3" module="$4" version="$5" pkg="$6" ldflags="${7:-}"
  new_module "$work/$name" "$name-tool"
  printf '%s\n' '//go:build tools' '' 'package tools' '' "import _ \"$pkg\"" >tools.go
  go get "${module}@${version}" >&2
  go mod tidy >&2
  log "building $name ${version}"
  go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name" "$pkg" >&2
}

build_kwok() {
  build_module "$1" "$2" kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
}

build_helm() {
  build_module "$1" "$2" helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
}

build_minio() {
  local out="$1" work="$2"
  log "building minio ${MINIO_VERSION}"
  # No replace directives in MinIO's go.mod, so `go install module@version` works directly.
  ( cd "$work" && GOBIN="$out" go install -trimpath -ldflags "-s -w" \
      "github.com/minio/minio@${MINIO_VERSION}" >&2 )
}

build_prometheus() {
  local out="$1" work="$2" v="${PROMETHEUS_VERSION#v0.}"
  local release="3.${v#3}" p=github.com/prometheus/prometheus
  log "building prometheus ${PROMETHEUS_VERSION} (cold: about 5 minutes on 2 cores)"
  # Only Kubernetes service discovery is compiled in (the build tags of plugins/*.go): the
  # cloud SDKs of the others would double the build. Without the `builtinassets` tag the web UI
  # is not embedded; the HTTP API, which is all the tests and the operator use, is unaffected.
  ( cd "$work" && GOBIN="$out" go install -trimpath -tags remove_all_sd,enable_kubernetes_sd \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${release}" \
      "$p/cmd/prometheus@${PROMETHEUS_VERSION}" "$p/cmd/promtool@${PROMETHEUS_VERSION}" >&2 )
}

# Not a binary: the standard-channel CRD manifests (HTTPRoute, Gateway, GatewayClass,
# ReferenceGrant, ...) from the module's config/crd/standard, for `kubectl apply -f DIR`.
build_gateway-api() {
  local out="$1" work="$2" dir
  dir="$(cd "$work" && go mod download -json "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$out/gateway-api-crds"
  install -m 0644 "$dir"/config/crd/standard/*.yaml "$out/gateway-api-crds/"
}

# ensure TOOL VERSION BINARIES...: build into $CACHE_ROOT/TOOL-VERSION-PLATFORM once.
ensure() {
  local tool="$1" version="$2"
  shift 2
  local dir="$CACHE_ROOT/${tool}-${version}-${PLATFORM}"
  if [[ ! -f "$dir/.complete" ]]; then
    local work
    work="$(mktemp -d)"
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    ( "build_${tool}" "$dir.partial" "$work" )
    rm -rf "$work"
    local b
    for b in "$@"; do
      [[ -x "$dir.partial/$b" ]] || { log "missing $b after building $tool"; exit 1; }
    done
    rm -rf "$dir" && mv "$dir.partial" "$dir" && touch "$dir/.complete"
  fi
  local b
  # -n: replace a link to a directory (gateway-api-crds) instead of linking inside it.
  for b in "$@"; do ln -sfn "$dir/$b" "$BIN/$b"; done
}

KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
KEY="${KEY}_minio-${MINIO_VERSION:0:21}_prometheus-${PROMETHEUS_VERSION}"
KEY="${KEY}_gateway-api-${GATEWAY_API_VERSION}_node-${PAUSE_VERSION}_${PLATFORM}"
BIN="$CACHE_ROOT/bin/$KEY"
mkdir -p "$BIN"
ensure etcd "$ETCD_VERSION" etcd
ensure kwok "$KWOK_VERSION" kwok
ensure k8s "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl
ensure helm "$HELM_VERSION" helm
ensure minio "$MINIO_VERSION" minio
ensure prometheus "$PROMETHEUS_VERSION" prometheus promtool
ensure gateway-api "$GATEWAY_API_VERSION" gateway-api-crds
ensure k8s-node "$K8S_VERSION" kubelet kube-proxy
ensure pause "$PAUSE_VERSION" pause
echo "$BIN"
