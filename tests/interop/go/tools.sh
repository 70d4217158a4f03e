#!/usr/bin/env bash
# Installs the gRPC ecosystem tools the interop run uses into build/go/bin, with
# `go install` at pinned versions (skipped when that exact version is already there).
#
#     tests/interop/go/tools.sh        prints the bin directory on stdout
set -euo pipefail

# ---- pinned versions ----------------------------------------------------------------
GRPCURL_VERSION=v1.9.4             # github.com/fullstorydev/grpcurl/cmd/grpcurl
GRPC_HEALTH_PROBE_VERSION=v0.4.61  # github.com/grpc-ecosystem/grpc-health-probe
# --------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
BIN="$ROOT/build/go/bin"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

install_tool() {
    local name=$1 pkg=$2 version=$3 stamp="$BIN/.$1.version"
    if [[ -x "$BIN/$name" && -f "$stamp" && "$(<"$stamp")" == "$version" ]]; then
        return
    fi
    mkdir -p "$BIN"
    echo "go install $pkg@$version" >&2
    GOBIN="$BIN" GOFLAGS= go install "$pkg@$version" >&2
    echo "$version" >"$stamp"
}

command -v go >/dev/null || { echo "tools.sh: go is not on PATH" >&2; exit 1; }
install_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"
install_tool grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe "$GRPC_HEALTH_PROBE_VERSION"
echo "$BIN"
