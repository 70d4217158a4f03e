#!/usr/bin/env bash
# `make deploy-check`: render deploy/ and hold the result to the Kubernetes schemas, to
# checkov's policies and to tests/deploy. Needs kustomize ($KUSTOMIZE), kubernetes-validate
# and PyYAML in .venv, checkov in $TOOLS_VENV: the Makefile installs all three.
set -euo pipefail
cd "$(dirname "$0")/../.."
KUSTOMIZE=${KUSTOMIZE:-build/bin/kustomize}
TOOLS_VENV=${TOOLS_VENV:-build/tools-venv}
# The oldest Kubernetes the manifests are written for (autoscaling/v2, policy/v1 with
# unhealthyPodEvictionPolicy, NetworkPolicy port names), and the newest schema known.
OLDEST=1.27.0
out=build/deploy
rm -rf "$out" && mkdir -p "$out"

echo "kustomize $("$KUSTOMIZE" version): rendering deploy/ (base) and deploy/overlays/production"
"$KUSTOMIZE" build deploy >"$out/deploy.yaml"
"$KUSTOMIZE" build deploy/base >"$out/base.yaml"
"$KUSTOMIZE" build deploy/overlays/production >"$out/production.yaml"
# `kubectl apply -k deploy/` applies exactly the base.
cmp -s "$out/deploy.yaml" "$out/base.yaml" || { echo "deploy/ does not render the base" >&2; exit 1; }

for version in "$OLDEST" ""; do
  echo "kubernetes-validate --strict ${version:+-k $version }(${version:-newest schema})"
  .venv/bin/kubernetes-validate --strict --quiet ${version:+-k "$version"} \
    "$out/base.yaml" "$out/production.yaml"
done

# Every skip is a checkov.io/skipN annotation on the resource, with its reason beside it
# in deploy/base; the summary prints each skipped check with that reason, and each failure.
echo "checkov: the rendered manifests and the Dockerfile"
status=0
"$TOOLS_VENV/bin/checkov" --skip-download --framework kubernetes dockerfile -o json \
  -f "$out/base.yaml" -f "$out/production.yaml" -f Dockerfile >"$out/checkov.json" || status=$?
.venv/bin/python - "$out/checkov.json" <<'SUMMARY'
import json
import sys

reports = json.load(open(sys.argv[1]))
for report in reports if isinstance(reports, list) else [reports]:
    summary, results = report["summary"], report["results"]
    print(f"  {report['check_type']}: {summary['passed']} passed, {summary['failed']} failed, "
          f"{summary['skipped']} skipped")
    for check in results["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        print(f"    skipped {check['check_id']} {check['resource']} ({check['file_path']}): {reason}")
    for check in results["failed_checks"]:
        print(f"    FAILED {check['check_id']} {check['check_name']}: {check['resource']} "
              f"({check['file_path']}:{check['file_line_range']})")
SUMMARY
[ "$status" -eq 0 ] || { echo "checkov failed (exit $status)" >&2; exit "$status"; }

echo "tests/deploy"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy
