#!/usr/bin/env bash
# Debian's packages for the local stack's real node and image builds, installed with apt when
# missing: containerd and runc (the CRI runtime), the CNI plugins (bridge, host-local,
# loopback, portmap), nftables (kube-proxy's mode), iproute2, the OCI registry, and buildah,
# podman and mmdebstrap (Toque's image), and shellcheck (actionlint checks the GitHub workflows'
# scripts with it). Called by `make up` and `make test`.
set -euo pipefail
declare -A want=(
  [containerd]=containerd [ctr]=containerd [runc]=runc [nft]=nftables [ip]=iproute2
  [docker-registry]=docker-registry [buildah]=buildah [podman]=podman [mmdebstrap]=mmdebstrap
  [/usr/lib/cni/bridge]=containernetworking-plugins [shellcheck]=shellcheck
)
need=()
for tool in "${!want[@]}"; do
  if [[ "$tool" == /* ]]; then [[ -x "$tool" ]] && continue
  else command -v "$tool" >/dev/null && continue; fi
  need+=("${want[$tool]}")
done
if ((${#need[@]})); then
  mapfile -t need < <(printf '%s\n' "${need[@]}" uidmap | sort -u)
  echo "[node-deps] installing ${need[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi
# Debian's containerd package starts no daemon here (no init system); the node runs its own.
