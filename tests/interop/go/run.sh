#!/usr/bin/env bash
# The Go interop run against a running gateway (embedded emulator, open mode):
#
#     tests/interop/go/run.sh HOST:PORT [CLIENT FLAGS, e.g. -run REGEXP]
#
# 1. builds the Go client (this module, with generated/go through its `replace`) once into
#    build/go/interop-client — go's build and module caches make a warm rebuild a no-op —
#    while tools.sh installs grpcurl and grpc-health-probe at pinned versions into
#    build/go/bin in the background (skipped when already there);
#    With the build tag `streaming` when generated/go has StreamAgentRun and WatchExecution;
# 2. runs it: one `PASS name` / `FAIL name: why` line per check, then `N passed, N failed`;
# 3. checks reflection, a JSON call and the health service with grpcurl and
#    grpc-health-probe (and, when the harness sets GATEWAY_INTEROP_PASSTHROUGH or
#    GATEWAY_INTEROP_ECHO_TARGET, the header allowlists), then `tools: N passed, N failed`.
# Exits 1 when any check of either part failed. tests/interop/harness.py starts the
# gateway and calls this script: `.venv/bin/python tests/interop/harness.py go`.
#
# With GATEWAY_INTEROP_TLS_CA (the CA of the gateway's certificate) the client and the
# tools speak TLS; with GATEWAY_INTEROP_TLS_CERT and GATEWAY_INTEROP_TLS_KEY as well they
# present that client certificate (mTLS). Unset: plaintext.
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 HOST:PORT [CLIENT FLAGS]" >&2
    exit 2
fi
TARGET=$1
shift
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="$ROOT/build/go"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

command -v go >/dev/null || { echo "run.sh: go is not on PATH (Go 1.26 is needed)" >&2; exit 1; }
mkdir -p "$OUT"

# The tools' transport flags: plaintext, or TLS (and mTLS) with the files the client uses.
grpcurl_tls=(-plaintext)
probe_tls=()
if [[ -n "${GATEWAY_INTEROP_TLS_CA:-}" ]]; then
    grpcurl_tls=(-cacert "$GATEWAY_INTEROP_TLS_CA")
    probe_tls=(-tls -tls-ca-cert "$GATEWAY_INTEROP_TLS_CA")
    if [[ -n "${GATEWAY_INTEROP_TLS_CERT:-}" ]]; then
        grpcurl_tls+=(-cert "$GATEWAY_INTEROP_TLS_CERT" -key "$GATEWAY_INTEROP_TLS_KEY")
        probe_tls+=(-tls-client-cert "$GATEWAY_INTEROP_TLS_CERT" -tls-client-key "$GATEWAY_INTEROP_TLS_KEY")
    fi
fi

# grpcurl and grpc-health-probe build in the background meanwhile (only the first time).
tools_log="$(mktemp)"
trap 'rm -f "$tools_log"' EXIT
"$HERE/tools.sh" >"$tools_log" 2>&1 &
tools_pid=$!

# ---- 1. build ---------------------------------------------------------------------------
# The streaming checks (streaming_checks.go) need stubs that have the streaming RPCs.
tags=""
stubs="$ROOT/generated/go/gagiteck/v1"
if grep -qs 'StreamAgentRun(ctx' "$stubs/agent_grpc.pb.go" &&
    grep -qs 'WatchExecution(ctx' "$stubs/execution_grpc.pb.go"; then
    tags="streaming"
else
    echo "run.sh: generated/go has no StreamAgentRun/WatchExecution: streaming checks left out" >&2
fi
if ! (cd "$HERE" && go build -trimpath -tags "$tags" -o "$OUT/interop-client" .); then
    echo "run.sh: building the Go interop client failed" >&2
    echo "0 passed, 1 failed"
    wait "$tools_pid"
    exit 1
fi

# ---- 2. the Go client -------------------------------------------------------------------
"$OUT/interop-client" "$@" "$TARGET"
client_rc=$?

# ---- 3. ecosystem tools -----------------------------------------------------------------
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
one_line() { tr '\n' ' ' <<<"$1" | cut -c1-300; }
# grpcurl -v ListAgents with x-tenant-id: $tenant against $1 (then grpcurl's transport
# flags): the "Response headers received" block, or all the output when the call failed.
response_headers() {
    local target=$1 out
    shift
    out="$("$BIN/grpcurl" "$@" -connect-timeout 5 -max-time 10 -v -H "x-tenant-id: $tenant" \
        -d '{"limit":1}' "$target" gagiteck.v1.AgentService/ListAgents 2>&1)" || { echo "$out"; return 1; }
    awk '/^Response headers received:$/ {on = 1; next} on && /^$/ {exit} on' <<<"$out"
}

if wait "$tools_pid"; then
    head -n -1 "$tools_log" >&2
    BIN="$(tail -n 1 "$tools_log")"
    # Reflection: the services are listed.
    if out="$("$BIN/grpcurl" "${grpcurl_tls[@]}" -connect-timeout 5 -max-time 10 "$TARGET" list 2>&1)"; then
        if grep -qx 'gagiteck.v1.AgentService' <<<"$out"; then
            pass tools.grpcurl_list
        else
            fail tools.grpcurl_list "gagiteck.v1.AgentService not listed: $(one_line "$out")"
        fi
    else
        fail tools.grpcurl_list "grpcurl list failed: $(one_line "$out")"
    fi

    # A call with a JSON body, described through reflection; the answer is JSON with an id.
    if out="$("$BIN/grpcurl" "${grpcurl_tls[@]}" -connect-timeout 5 -max-time 10 -H "x-request-id: go-interop-grpcurl-$$" \
        -d '{"agent":{"name":"x"}}' "$TARGET" gagiteck.v1.AgentService/CreateAgent 2>&1)"; then
        if grep -Eq '^  "id": "[^"]+"' <<<"$out" && grep -Eq '^  "name": "x"' <<<"$out"; then
            pass tools.grpcurl_create_agent
        else
            fail tools.grpcurl_create_agent "no top-level id (and name x) in: $(one_line "$out")"
        fi
    else
        fail tools.grpcurl_create_agent "grpcurl CreateAgent failed: $(one_line "$out")"
    fi

    # grpc.health.v1: the gateway reports SERVING.
    if out="$("$BIN/grpc-health-probe" "${probe_tls[@]}" -addr "$TARGET" -connect-timeout 5s -rpc-timeout 5s 2>&1)"; then
        if grep -q 'SERVING' <<<"$out" && ! grep -q 'NOT_SERVING' <<<"$out"; then
            pass tools.health_probe_serving
        else
            fail tools.health_probe_serving "unexpected answer: $(one_line "$out")"
        fi
    else
        fail tools.health_probe_serving "grpc-health-probe failed: $(one_line "$out")"
    fi

    # Header allowlists, with -v: the "Response headers received" block of ListAgents.
    # GATEWAY_INTEROP_PASSTHROUGH: the gateway returns the emulator's x-ratelimit-limit
    # and -remaining (not -reset); GATEWAY_INTEROP_ECHO_TARGET: a plaintext gateway whose
    # upstream answers x-tenant-seen with the x-tenant-id it received.
    tenant="grpcurl-interop-$$"
    if [[ -n "${GATEWAY_INTEROP_PASSTHROUGH:-}" ]]; then
        if out="$(response_headers "$TARGET" "${grpcurl_tls[@]}")"; then
            if grep -Eqx 'x-ratelimit-limit: [0-9]+' <<<"$out" &&
                grep -Eqx 'x-ratelimit-remaining: [0-9]+' <<<"$out" &&
                ! grep -q '^x-ratelimit-reset:' <<<"$out"; then
                pass tools.grpcurl_returned_headers
            else
                fail tools.grpcurl_returned_headers "want x-ratelimit-limit and -remaining (not -reset) in: $(one_line "$out")"
            fi
        else
            fail tools.grpcurl_returned_headers "grpcurl -v ListAgents failed: $(one_line "$out")"
        fi
    fi
    if [[ -n "${GATEWAY_INTEROP_ECHO_TARGET:-}" ]]; then
        if out="$(response_headers "$GATEWAY_INTEROP_ECHO_TARGET" -plaintext)"; then
            if grep -qx "x-tenant-seen: $tenant" <<<"$out"; then
                pass tools.grpcurl_tenant_forwarded
            else
                fail tools.grpcurl_tenant_forwarded "want x-tenant-seen: $tenant in: $(one_line "$out")"
            fi
        else
            fail tools.grpcurl_tenant_forwarded "grpcurl -v ListAgents failed: $(one_line "$out")"
        fi
    fi
else
    sed 's/^/  tools.sh: /' "$tools_log" | tail -20
    fail tools.install "tools.sh could not install grpcurl and grpc-health-probe"
fi
echo "tools: $passed passed, $failed failed"

if [[ $client_rc -ne 0 || $failed -ne 0 ]]; then
    exit 1
fi
exit 0
