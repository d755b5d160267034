#!/usr/bin/env bash
# Builds Toque's image from the repository's Dockerfile with buildah (no Docker engine), on a
# Debian base made here with mmdebstrap (no outside image registry is reachable), and tags it
# by the content it was built from, so a second run with the same sources costs nothing.
# Installs Debian's buildah, podman, runc and mmdebstrap when they are missing. Prints the
# image reference (localhost/toque:<content hash>) on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${TOQUE_BASE_SUITE:-bookworm}"
BASE="localhost/toque-base:${SUITE}"
log() { echo "[build-image] $*" >&2; }

need=()
for tool in buildah podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]})); then
  log "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" uidmap >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" uidmap >&2; }
fi

if ! podman image exists "$BASE"; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "building the base image ${BASE} with mmdebstrap (python3 from Debian ${SUITE})"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$work/base.tar" >&2
  podman import "$work/base.tar" "$BASE" >&2
fi

# The image's content: everything the Dockerfile copies, plus the base it starts from.
hash="$(
  {
    podman image inspect --format '{{.Id}}' "$BASE"
    git ls-files -s Dockerfile .dockerignore pyproject.toml constraints.txt README.md operator
    git diff HEAD -- Dockerfile .dockerignore pyproject.toml constraints.txt README.md operator 2>/dev/null
    git ls-files -z --others --exclude-standard operator | xargs -0 -r sha256sum
  } | sha256sum | cut -c1-16
)"
IMAGE="localhost/toque:${hash}"
if podman image exists "$IMAGE"; then
  log "${IMAGE} is up to date"
else
  args=(--network host --layers --build-arg "BASE_IMAGE=${BASE}" -t "$IMAGE")
  # Behind a TLS-inspecting proxy pip needs the host's CA bundle (a build secret: not in
  # any layer of the image).
  ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
  [[ -s "$ca" ]] && args+=(--secret "id=ca,src=${ca}")
  log "building ${IMAGE}"
  # The dependencies' stage, tagged by what it is built from, so pruning untagged layers
  # below never throws away the slow part of the next build.
  deps="localhost/toque-deps:$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  buildah bud --quiet "${args[@]/#$IMAGE/$deps}" --target deps . >&2
  buildah bud --quiet "${args[@]}" . >&2
  # Earlier builds (about 1 GB each) are not needed once a newer one exists.
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/toque |
    grep -vx "$IMAGE" | xargs -r podman rmi -f >/dev/null 2>&1 || true
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/toque-deps |
    grep -vx "$deps" | xargs -r podman rmi -f >/dev/null 2>&1 || true
  # Untagged layers of earlier builds; the newest build's cache (deps stage) stays tagged-in.
  podman image prune -f >/dev/null 2>&1 || true
fi
echo "$IMAGE"
