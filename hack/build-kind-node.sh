#!/usr/bin/env bash
# Builds a kind node image here, with buildah and no outside image registry, for `make test-kind`
# (kind's own `kindest/node` cannot be pulled, and `kind build node-image` needs Docker and
# dl.k8s.io; see docs/kind.md). Also builds, from Go modules at pinned versions and into the
# same cache as hack/build-tools.sh (~/.cache/toque/tools/<tool>-<version>-<platform>): kind,
# kubeadm, etcd (the version kubeadm asks for) and CoreDNS.
#
# The node image is localhost/toque-base:<suite> (made by hack/build-image.sh) plus Debian's
# systemd, containerd, runc, CNI plugins and iptables, kind's base files (entrypoint, units,
# containerd config) from the kind module, kubelet/kubectl from hack/build-tools.sh, kubeadm,
# a bridge CNI config (kindnetd cannot be pulled), and the control-plane images as image
# archives that a oneshot unit imports into containerd at boot: kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy (the binaries from hack/build-tools.sh),
# pause (build-tools.sh's pause program), etcd and CoreDNS. It is tagged by the content it is
# built from, so a second run costs nothing. Installs buildah and podman from Debian when missing.
#
#   hack/build-kind-node.sh        prints the node image reference on its last line
#   hack/build-kind-node.sh kind   prints the path of the kind binary on its last line
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_VERSION="${KIND_VERSION:-v0.33.0}"
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
# What kubeadm v1.34 asks for (`kubeadm config images list`); checked below.
KIND_ETCD_VERSION="${KIND_ETCD_VERSION:-v3.6.5}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
SUITE="${TOQUE_BASE_SUITE:-bookworm}"
BASE="localhost/toque-base:${SUITE}"
NODE_REPO="localhost/toque-kind-node"
# The pod network of the single node (kind's default podSubnet is 10.244.0.0/16).
POD_CIDR="10.244.0.0/24"
CACHE_ROOT="${TOQUE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toque/tools}"
log() { echo "[build-kind-node] $*" >&2; }

command -v go >/dev/null || { log "Go >= 1.24 is needed (no Go on PATH)"; exit 1; }
PLATFORM="$(go env GOOS)-$(go env GOARCH)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

new_module() {
  rm -rf "$1" && mkdir -p "$1" && cd "$1"
  go mod init "toque.dev/$2" >/dev/null 2>&1
}

build_kind() {
  local out="$1" work="$2"
  log "building kind ${KIND_VERSION}"
  ( cd "$work" && GOBIN="$out" go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/kind@${KIND_VERSION}" >&2 )
  # kind's node image recipe (entrypoint, units, containerd config) is in the module.
  local dir
  dir="$(cd "$work" && go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp -r "$dir/images/base/files" "$out/base-files"
  chmod -R u+w "$out/base-files"
}

# kubeadm from k8s.io/kubernetes, the way build-tools.sh builds the control plane: a wrapper
# module mapping each staging module (a local replace in k/k) to its v0.X tag.
build_kubeadm() {
  local out="$1" work="$2" minor="${K8S_VERSION#v1.}"
  new_module "$work/kubeadm" kubeadm-tool
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
  printf '%s\n' '//go:build tools' '' 'package tools' '' \
    'import _ "k8s.io/kubernetes/cmd/kubeadm"' >tools.go
  go mod tidy >&2
  local ldflags="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor%%.*}"
    ldflags+=" -X $p.gitTreeState=clean"
  done
  log "building kubeadm ${K8S_VERSION} (cold: several minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$out/" k8s.io/kubernetes/cmd/kubeadm >&2
}

# etcd's server module has replace directives, so `go install` cannot build it: a wrapper.
build_etcd() {
  local out="$1" work="$2"
  new_module "$work/etcd" etcd-tool
  printf '%s\n' 'package main' '' 'import (' '	"os"' '' \
    '	"go.etcd.io/etcd/server/v3/etcdmain"' ')' '' \
    'func main() { etcdmain.Main(os.Args) }' >main.go
  go get "go.etcd.io/etcd/server/v3@${KIND_ETCD_VERSION}" >&2
  go mod tidy >&2
  log "building etcd ${KIND_ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" . >&2
}

build_coredns() {
  local out="$1" work="$2"
  new_module "$work/coredns" coredns-tool
  printf '%s\n' '//go:build tools' '' 'package tools' '' \
    'import _ "github.com/coredns/coredns"' >tools.go
  go get "github.com/coredns/coredns@${COREDNS_VERSION}" >&2
  go mod tidy >&2
  log "building coredns ${COREDNS_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$out/coredns" github.com/coredns/coredns >&2
}

# ensure TOOL VERSION FILES...: build into $CACHE_ROOT/TOOL-VERSION-PLATFORM once; prints the dir.
ensure() {
  local tool="$1" version="$2"
  shift 2
  local dir="$CACHE_ROOT/${tool}-${version}-${PLATFORM}"
  if [[ ! -f "$dir/.complete" ]]; then
    local work b
    work="$(mktemp -d)"
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    ( "build_${tool}" "$dir.partial" "$work" )
    rm -rf "$work"
    for b in "$@"; do
      [[ -e "$dir.partial/$b" ]] || { log "missing $b after building $tool"; exit 1; }
    done
    rm -rf "$dir" && mv "$dir.partial" "$dir" && touch "$dir/.complete"
  fi
  echo "$dir"
}

KIND_DIR="$(ensure kind "$KIND_VERSION" kind base-files)"
if [[ "${1:-}" == kind ]]; then
  echo "$KIND_DIR/kind"
  exit 0
fi

need=()
for tool in buildah podman; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
  log "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2; }
fi

TOOLS_BIN="${TOQUE_TOOLS_BIN:-$(bash hack/build-tools.sh | tail -n1)}"
KUBEADM_DIR="$(ensure kubeadm "$K8S_VERSION" kubeadm)"
ETCD_DIR="$(ensure etcd "$KIND_ETCD_VERSION" etcd)"
COREDNS_DIR="$(ensure coredns "$COREDNS_VERSION" coredns)"
podman image exists "$BASE" || bash hack/build-image.sh >/dev/null

# The images kubeadm will ask the node's containerd for.
mapfile -t WANT < <("$KUBEADM_DIR/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
image_for() {
  local i
  for i in "${WANT[@]}"; do [[ "${i%:*}" == "registry.k8s.io/$1" ]] && { echo "$i"; return; }; done
  log "kubeadm ${K8S_VERSION} does not list registry.k8s.io/$1: ${WANT[*]}"
  exit 1
}
ETCD_IMAGE="$(image_for etcd)"
COREDNS_IMAGE="$(image_for coredns/coredns)"
PAUSE_IMAGE="$(image_for pause)"
[[ "$ETCD_IMAGE" == "registry.k8s.io/etcd:${KIND_ETCD_VERSION#v}-"* ]] ||
  { log "kubeadm wants ${ETCD_IMAGE}; set KIND_ETCD_VERSION to match"; exit 1; }
[[ "$COREDNS_IMAGE" == *":${COREDNS_VERSION}" ]] ||
  { log "kubeadm wants ${COREDNS_IMAGE}; set COREDNS_VERSION to match"; exit 1; }

# The node image's content: this script, the base and every binary that goes in.
hash="$(
  {
    cat "$0"
    podman image inspect --format '{{.Id}}' "$BASE"
    for b in kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy pause; do
      readlink -f "$TOOLS_BIN/$b"
    done
    echo "$KIND_DIR $KUBEADM_DIR $ETCD_DIR $COREDNS_DIR"
  } | sha256sum | cut -c1-16
)"
NODE_IMAGE="${NODE_REPO}:${hash}"
if podman image exists "$NODE_IMAGE"; then
  log "${NODE_IMAGE} is up to date"
  echo "$NODE_IMAGE"
  exit 0
fi

work="$(mktemp -d)"
ctrs=()
cleanup() {
  local c
  for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
stage="$work/root"
tars="$stage/kind/images"
mkdir -p "$tars"

# scratch_image SRCDIR NAME... -- [buildah-config args...]: an image FROM scratch holding
# SRCDIR, written as a docker archive per name into the node's /kind/images.
scratch_image() {
  local src="$1" c n
  shift
  local -a names=()
  while [[ "$1" != -- ]]; do names+=("$1"); shift; done
  shift
  c="$(buildah from scratch)"
  ctrs+=("$c")
  mkdir -p "$src/tmp" && chmod 1777 "$src/tmp"
  buildah copy --quiet "$c" "$src" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/bin:/bin "$@" "$c"
  for n in "${names[@]}"; do
    log "image ${n}"
    buildah commit --quiet --format docker "$c" \
      "docker-archive:${tars}/$(echo "$n" | tr '/:' '__').tar:${n}" >/dev/null
  done
}

for b in kube-apiserver kube-controller-manager kube-scheduler; do
  mkdir -p "$work/$b/usr/local/bin" && cp -L "$TOOLS_BIN/$b" "$work/$b/usr/local/bin/"
  scratch_image "$work/$b" "registry.k8s.io/$b:${K8S_VERSION}" --
done
mkdir -p "$work/etcd/usr/local/bin" "$work/etcd/var/lib/etcd"
cp "$ETCD_DIR/etcd" "$work/etcd/usr/local/bin/"
scratch_image "$work/etcd" "$ETCD_IMAGE" --
mkdir -p "$work/coredns" && cp "$COREDNS_DIR/coredns" "$work/coredns/"
scratch_image "$work/coredns" "$COREDNS_IMAGE" -- --entrypoint '["/coredns"]'
mkdir -p "$work/pause" && cp -L "$TOOLS_BIN/pause" "$work/pause/pause"
# kind's containerd config pins sandbox_image pause:3.10; kubeadm lists its own.
scratch_image "$work/pause" "$PAUSE_IMAGE" registry.k8s.io/pause:3.10 -- --entrypoint '["/pause"]'

# kube-proxy (iptables mode) needs iptables and conntrack: Debian's, on the base.
c="$(buildah from "$BASE")"
ctrs+=("$c")
log "image registry.k8s.io/kube-proxy:${K8S_VERSION} (apt: iptables conntrack)"
buildah run --isolation chroot --network host "$c" -- sh -ec \
  'apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iptables conntrack
   apt-get clean; rm -rf /var/lib/apt/lists/*' >&2
mkdir -p "$work/kube-proxy" && cp -L "$TOOLS_BIN/kube-proxy" "$work/kube-proxy/"
buildah copy --quiet "$c" "$work/kube-proxy/kube-proxy" /usr/local/bin/kube-proxy >/dev/null
buildah commit --quiet --format docker "$c" \
  "docker-archive:${tars}/kube-proxy.tar:registry.k8s.io/kube-proxy:${K8S_VERSION}" >/dev/null

# The node's files: kind's base files plus ours.
cp -r "$KIND_DIR/base-files/." "$stage/"
chmod -R a+rX "$stage"
chmod 0755 "$stage"/usr/local/bin/* "$stage"/kind/bin/*
mkdir -p "$stage/usr/bin" "$stage/etc/cni/net.d" "$stage/kind/manifests" "$stage/etc/systemd/system"
cp -L "$TOOLS_BIN/kubelet" "$TOOLS_BIN/kubectl" "$KUBEADM_DIR/kubeadm" "$stage/usr/bin/"
echo "$K8S_VERSION" >"$stage/kind/version"
# kindnetd (kind's default CNI) cannot be pulled: kind runs with disableDefaultCNI and this
# bridge config, enough for one node.
cat >"$stage/etc/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kind-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# kind's "Installing StorageClass" applies this file (local-path-provisioner cannot be pulled).
cat >"$stage/kind/manifests/default-storage.yaml" <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
# kind mounts a fresh volume on /var, so the images are imported into containerd at boot.
cat >"$stage/kind/bin/import-images.sh" <<'EOF'
#!/bin/sh
set -e
for i in $(seq 1 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done
for f in /kind/images/*.tar; do ctr -n k8s.io images import "$f"; done
EOF
chmod 0755 "$stage/kind/bin/import-images.sh"
cat >"$stage/etc/systemd/system/toque-import-images.service" <<'EOF'
[Unit]
Description=Import the preloaded control-plane images into containerd
After=containerd.service
Requires=containerd.service
Before=kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/kind/bin/import-images.sh

[Install]
WantedBy=multi-user.target
EOF

node="$(buildah from "$BASE")"
ctrs+=("$node")
log "node image: Debian packages"
buildah run --isolation chroot --network host "$node" -- sh -ec \
  'apt-get update -q
   DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
     systemd systemd-sysv dbus conntrack iptables nftables iproute2 ethtool util-linux mount \
     kmod libseccomp2 pigz bash ca-certificates curl jq procps \
     containerd runc containernetworking-plugins
   apt-get clean; rm -rf /var/lib/apt/lists/*' >&2
log "node image: kind's files, kubelet, kubeadm, images"
buildah copy --quiet "$node" "$stage" / >/dev/null
# The rest of kind's images/base/Dockerfile, with Debian's containerd, runc and CNI plugins
# where kind builds its own.
buildah run --isolation chroot "$node" -- sh -ec '
  find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo ReadKMsg=no >>/etc/systemd/journald.conf
  ln -sf /usr/lib/systemd/systemd /sbin/init
  for b in containerd ctr containerd-shim-runc-v2; do ln -sf /usr/bin/$b /usr/local/bin/$b; done
  mkdir -p /opt/cni/bin && ln -sf /usr/lib/cni/* /opt/cni/bin/
  ctr oci spec |
    jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" |
    jq "del(.process.rlimits)" >/etc/containerd/cri-base.json
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service toque-import-images.service
  systemctl mask systemd-binfmt.service
  mkdir -p /etc/kubernetes/manifests
  chmod 755 /kind /kind/bin
  kubeadm version -o short' >&2
buildah config --env container=docker --stop-signal SIGRTMIN+3 \
  --entrypoint '["/usr/local/bin/entrypoint"]' --cmd /sbin/init "$node"
log "committing ${NODE_IMAGE}"
buildah commit --quiet "$node" "$NODE_IMAGE" >/dev/null
# Earlier node images (about 1.5 GB each) are not needed once a newer one exists.
podman images --format '{{.Repository}}:{{.Tag}}' "$NODE_REPO" |
  grep -vx "$NODE_IMAGE" | xargs -r podman rmi -f >/dev/null 2>&1 || true
echo "$NODE_IMAGE"
