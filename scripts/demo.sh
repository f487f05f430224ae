#!/usr/bin/env bash
# The quick-start demo: a run that stops for a second person's sign-off, is approved,
# and resumes from its checkpoint.
set -euo pipefail
export RUNBOOK_USER="${RUNBOOK_USER:-operator}"
release="demo-$(date +%H%M%S)"

echo "\$ runbook plan demo --release $release"
runbook plan demo --release "$release"
echo
echo "\$ runbook run demo --release $release"
set +e
runbook run demo --release "$release"
code=$?
set -e
echo "(exit code $code: waiting for an approval)"
run_id=$(runbook status --output json --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo
echo "\$ runbook approve $run_id --step sign-off --by alice --note 'release checked'"
runbook approve "$run_id" --step sign-off --by alice --note "release checked"
echo
echo "\$ runbook resume $run_id"
runbook resume "$run_id"
echo
echo "\$ runbook status $run_id"
runbook status "$run_id"
