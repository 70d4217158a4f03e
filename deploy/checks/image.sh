#!/usr/bin/env bash
# `make image-check`: the Dockerfile's steps without a Docker engine. The build context is
# what .dockerignore lets through; the dependencies come from requirements.lock alone
# (--require-hashes --no-deps) into a fresh venv, then the gateway itself with --no-deps
# and no build isolation; `pip check` proves the lock complete. Then, in an environment
# as bare as the image's, the gateway serves on a port that is not the default, and the
# HEALTHCHECK's command must say so; once the gateway is gone, it must say that too.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
work=build/image-check
started=$SECONDS

wanted=$(sed -n 's/^FROM python:\([0-9]*\.[0-9]*\)\..* AS base$/\1/p' Dockerfile)
have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$wanted" = "$have" ] || { echo "image-check: the image has Python $wanted, $PYTHON is $have" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work/src"
# The build context: .dockerignore is an allow-list (`*`, then `!path` for each).
sed -n 's/^!//p' .dockerignore | while read -r path; do
  mkdir -p "$work/src/$(dirname "$path")"
  cp -R "$path" "$work/src/$path"
done
find "$work/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

echo "image-check: pip install --require-hashes --no-deps -r requirements.lock (fresh venv)"
"$PYTHON" -m venv "$work/venv"
bin=$(cd "$work/venv/bin" && pwd)
pip=("$bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --require-hashes --no-deps -r "$work/src/requirements.lock"
echo "image-check: pip install --no-deps --no-build-isolation . ; pip check"
(cd "$work/src" && "${pip[@]}" install --quiet --no-deps --no-build-isolation .)
"${pip[@]}" check

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The image's environment (Dockerfile ENV) and nothing else of this shell's.
image_env=(env -i "PATH=$bin:/usr/bin:/bin" "HOME=$PWD/$work" "GATEWAY_LISTEN=0.0.0.0:$port"
  "GATEWAY_ADMIN_LISTEN=0.0.0.0:$admin" GATEWAY_LOG_FORMAT=json GATEWAY_SHUTDOWN_DELAY=0
  PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1)

cd "$work"  # not the repository: only the installed gateway can be imported
"${image_env[@]}" gagiteck-gateway --version
"${image_env[@]}" gagiteck-gateway serve >serve.log 2>&1 &
gateway=$!
trap 'kill "$gateway" 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  "${image_env[@]}" gagiteck-gateway health >health.out 2>&1 && break
  kill -0 "$gateway" 2>/dev/null || { cat serve.log >&2; echo "image-check: serve exited" >&2; exit 1; }
  sleep 0.5
done
"${image_env[@]}" gagiteck-gateway health || { cat health.out serve.log >&2; exit 1; }
kill -TERM "$gateway"
wait "$gateway" || { cat serve.log >&2; echo "image-check: serve did not stop cleanly" >&2; exit 1; }
trap - EXIT
if "${image_env[@]}" gagiteck-gateway health 2>health.out; then
  echo "image-check: health said SERVING with no gateway running" >&2; exit 1
fi
echo "image-check: $(cat health.out)"
echo "image-check: passed in $((SECONDS - started))s"
