#!/usr/bin/env bash
# Java interop client: build once (reusing ~/.m2), then run it against a gateway.
#
#   bash tests/interop/java/run.sh HOST:PORT
#
# Builds the stubs (generated/java, installed into ~/.m2) when they are missing or older
# than the protos, builds this client when it is missing or older than its sources, and
# runs it with plain `java`. Prints PASS/FAIL lines and `N passed, N failed`; exits 1 if
# a check failed.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 HOST:PORT" >&2
  exit 2
fi
TARGET=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
STUBS=$ROOT/generated/java
# Maven's output goes to a log under target/ and is shown only when the build fails
# (Debian's Maven prints colour resets even with -B -q).
mvn_quiet() {
  local log=$1
  shift
  mkdir -p "$(dirname "$log")"
  if ! mvn -B -q "$@" >"$log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$log" >&2
    echo "java interop: mvn $* failed (log: $log)" >&2
    exit 1
  fi
}

# True when STAMP is missing or any of the given paths has a file newer than it.
stale() {
  local stamp=$1
  shift
  [[ -f $stamp ]] || return 0
  [[ -n $(find "$@" -type f -newer "$stamp" -print -quit) ]]
}

stubs_stamp=$STUBS/target/.installed
stubs_jar=${HOME}/.m2/repository/com/gagiteck/gagiteck-grpc-stubs/0.1.0-SNAPSHOT/gagiteck-grpc-stubs-0.1.0-SNAPSHOT.jar
if [[ ! -f $stubs_jar ]] || stale "$stubs_stamp" "$ROOT/protos" "$STUBS/pom.xml"; then
  echo "java interop: building the stubs (generated/java)" >&2
  mvn_quiet "$STUBS/target/mvn-install.log" -f "$STUBS/pom.xml" install
  touch "$stubs_stamp"
fi

client_stamp=$HERE/target/.built
if stale "$client_stamp" "$HERE/src" "$HERE/pom.xml" "$stubs_stamp"; then
  echo "java interop: building the client (tests/interop/java)" >&2
  mvn_quiet "$HERE/target/mvn-package.log" -f "$HERE/pom.xml" package
  touch "$client_stamp"
fi

# A short-lived client: the C1 compiler and the serial collector start fastest.
exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
  -cp "$HERE/target/classes:$(cat "$HERE/target/classpath.txt")" \
  com.gagiteck.interop.InteropClient "$TARGET"
