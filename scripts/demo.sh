#!/usr/bin/env bash
# The quick-start demo: start the local sandbox (emulated Kubernetes and AWS), then promote
# uat1's release (api, web and worker; uat1 runs other api and web images than staging) to
# staging in it: the run stops for the UAT → Staging checklist, two people attest it, the run
# resumes from its checkpoint and promotes the two services that change. Each attestation is signed with the
# person's SSH key, which the sandbox generated into its keys/ folder.
set -euo pipefail
export RUNBOOK_USER="${RUNBOOK_USER:-operator}"
keys="${RUNBOOK_HOME:-.runbook}/sandbox/keys"

echo "\$ runbook sandbox up"
eval "$(runbook sandbox up)"
echo
# The sandbox's inventory of the release of three services (its default one lists the api alone).
export RUNBOOK_INVENTORY="${RUNBOOK_INVENTORY%/*}/quikapp-services.yaml"
echo "\$ export RUNBOOK_INVENTORY=$RUNBOOK_INVENTORY"
echo

echo "\$ runbook plan promote --from uat1 --to staging"
runbook plan promote --from uat1 --to staging
echo

echo "\$ runbook run promote --from uat1 --to staging"
set +e
runbook run promote --from uat1 --to staging
code=$?
set -e
echo "(exit code $code: waiting for the checklist to be attested)"
run_id=$(runbook status --output json --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo

echo "\$ runbook approve $run_id --step checklist --by alice --item uat-signoff --item acceptance-criteria --item release-notes --sign $keys/alice"
runbook approve "$run_id" --step checklist --by alice \
  --item uat-signoff --item acceptance-criteria --item release-notes --sign "$keys/alice"
echo "\$ runbook approve $run_id --step checklist --by bob --item documentation --item runbook-reviewed --item rollback-plan --note \"rollback plan in CHG-1042\" --sign $keys/bob"
runbook approve "$run_id" --step checklist --by bob \
  --item documentation --item runbook-reviewed --item rollback-plan --note "rollback plan in CHG-1042" \
  --sign "$keys/bob"
echo

echo "\$ runbook resume $run_id"
runbook resume "$run_id"
echo

echo "\$ runbook history --env staging"
runbook history --env staging
echo

echo "\$ runbook audit verify"
runbook audit verify
echo
echo "The sandbox keeps running; stop it with: uv run runbook sandbox down"
