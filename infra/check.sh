#!/usr/bin/env bash
# Static checks of infra/ that need no Azure: checkov's Bicep security policies, offline.
#
# Fails on any failed check, on any .bicep file checkov could not parse (checkov alone would pass those
# silently), on a suppression without a reason, and when nothing was scanned. Deliberate exceptions live
# next to the resource as `// checkov:skip=CKV_...: reason` comments, one per line.
#
# checkov lives in its own venv (.venv-infra, from requirements-infra.txt) so its many pinned
# dependencies never meet the app's; the venv is (re)built only when requirements-infra.txt changes.
# requirements-infra.txt pins and hashes every package (make lock), so pip checks each file it installs.
# Environment: INFRA_VENV (venv path), PYTHON (interpreter that creates it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${INFRA_VENV:-$root/.venv-infra}"
req="$root/requirements-infra.txt"
stamp="$venv/.requirements-infra.stamp"

if [[ ! -x "$venv/bin/checkov" ]] || ! cmp -s "$req" "$stamp"; then
  echo "infra/check.sh: installing $(grep -E "^checkov==" "$req" | cut -d" " -f1) (Bicep security checks, locked in ${req##*/}) into $venv:" >&2
  echo "  about 80 s the first time (checkov has many dependencies); later runs reuse it." >&2
  [[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$req"
  cp "$req" "$stamp"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# --skip-download: no network (no guideline or policy download). checkov's own exit code is not the
# verdict (it ignores parse errors unless told); the report below is.
set +e
CKV_PARSE_ERROR_FAIL=true "$venv/bin/checkov" -d infra --framework bicep --skip-download --compact \
  -o json --output-file-path "$out" >"$out/stdout" 2>"$out/stderr"
status=$?
set -e

"$venv/bin/python" - "$out/results_json.json" "$status" "$out/stderr" <<'PY'
import json
import sys
from pathlib import Path

report_path, status, stderr_path = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
if not report_path.is_file():
    sys.stderr.write(Path(stderr_path).read_text())
    sys.exit(f"infra/check.sh: FAILED: checkov wrote no report (exit {status})")
data = json.loads(report_path.read_text())
reports = data if isinstance(data, list) else [data]
passed = failed = skipped = parse_errors = resources = 0
problems = []
for report in reports:
    summary = report.get("summary", {})
    results = report.get("results", {})
    passed += summary.get("passed", 0)
    failed += summary.get("failed", 0)
    skipped += summary.get("skipped", 0)
    parse_errors += summary.get("parsing_errors", 0)
    resources += summary.get("resource_count", 0)
    for path in results.get("parsing_errors", []):
        problems.append(f"cannot parse {path}")
    for check in results.get("failed_checks", []):
        lines = "-".join(str(n) for n in check.get("file_line_range", []))
        problems.append(
            f"FAILED {check['check_id']} {check['resource']} ({check['file_path']}:{lines}): {check['check_name']}"
        )
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment", "").strip()
        if not reason or reason == "No comment provided":
            problems.append(f"suppression without a reason: {check['check_id']} {check['resource']}")
if resources == 0:
    problems.append("no Bicep resources were scanned")
for line in problems:
    print(f"infra/check.sh: {line}")
verdict = "FAILED" if problems or failed or parse_errors else "OK"
print(
    f"checkov bicep: {verdict}: {passed} passed, {failed} failed, {skipped} skipped (inline suppressions), "
    f"{parse_errors} parsing errors, {resources} resources"
)
sys.exit(1 if verdict == "FAILED" else 0)
PY
