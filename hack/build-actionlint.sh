#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter) from its Go module at a pinned version
# into the same cache as hack/build-tools.sh, in its own directory keyed by its version
# (~/.cache/toque/tools/actionlint-<version>-<platform>), so adding it changes no other tool's
# cache key. A second run with the same pin costs nothing. Called by `make actionlint` (part of
# `make lint`) and by tests/integration/test_init_project.py when TOQUE_ACTIONLINT is unset.
# Prints the path of the actionlint binary on its last line.
set -euo pipefail

ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE_ROOT="${TOQUE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toque/tools}"
log() { echo "[build-actionlint] $*" >&2; }

command -v go >/dev/null || { log "Go >= 1.24 is needed to build actionlint (no Go on PATH)"; exit 1; }
PLATFORM="$(go env GOOS)-$(go env GOARCH)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

DIR="$CACHE_ROOT/actionlint-${ACTIONLINT_VERSION}-${PLATFORM}"
if [[ ! -f "$DIR/.complete" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  rm -rf "$DIR.partial" && mkdir -p "$DIR.partial"
  log "building actionlint ${ACTIONLINT_VERSION}"
  # The version is stamped the way actionlint's release builds do, so `actionlint -version`
  # names it (a module build would otherwise print "(devel)").
  ( cd "$work" && GOBIN="$DIR.partial" go install -trimpath \
      -ldflags "-s -w -X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION}" \
      "github.com/rhysd/actionlint/cmd/actionlint@${ACTIONLINT_VERSION}" >&2 )
  [[ -x "$DIR.partial/actionlint" ]] || { log "no actionlint binary after the build"; exit 1; }
  rm -rf "$DIR" && mv "$DIR.partial" "$DIR" && touch "$DIR/.complete"
fi
echo "$DIR/actionlint"
