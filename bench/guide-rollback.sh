#!/usr/bin/env bash
# The guide's quick rollback as one script: the baseline bench/promote.py measures the
# rollback runbook against. It does the runbook's work on the sandbox: read the rollout
# history, undo to the previous revision, read the digest of the image it goes back to in ECR
# (the runbook records it), set that image in the environment's overlay and commit it (so the
# next apply does not roll forward again), and wait for the rollout.
#
# Usage: eval "$(runbook sandbox env --dir SANDBOX_DIR)"
#        bench/guide-rollback.sh SANDBOX_DIR ENV           e.g. .runbook/sandbox live
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SANDBOX_DIR ENV" >&2
    exit 2
fi
sandbox="$1"
env="$2"
if [[ -z "${KUBECONFIG:-}" || -z "${AWS_ENDPOINT_URL:-}" ]]; then
    echo "$0: KUBECONFIG and AWS_ENDPOINT_URL are not set: export the sandbox's" \
        "variables first: eval \"\$(runbook sandbox env)\"" >&2
    exit 2
fi
repository="quikapp/api"
container="api"
deployment="deployment/${env}-quikapp-api"
namespace="quikapp-${env}"
overlay="${sandbox}/k8s/overlays/${env}"
rollout_timeout="60s"

image_of() {  # the image of the deployment's container
    kubectl get "${deployment}" -n "${namespace}" \
        -o "jsonpath={.spec.template.spec.containers[?(@.name==\"${container}\")].image}"
}

# Roll back to the previous version.
kubectl rollout history "${deployment}" -n "${namespace}"
before="$(image_of)"
kubectl rollout undo "${deployment}" -n "${namespace}"
image="$(image_of)"
echo "${env}: ${before} → ${image}"
aws ecr describe-images --repository-name "${repository}" \
    --image-ids "imageTag=${image##*:}" --query 'imageDetails[0].imageDigest' --output text

# The overlay says what the cluster now runs.
if command -v kustomize >/dev/null; then
    (cd "${overlay}" && kustomize edit set image "${repository}=${image}")
else
    # kustomize edit set image, for an overlay whose images entry is name/newName/newTag
    # (kubectl has kustomize's build, not its edit).
    awk -v name="${repository}" -v new_name="${image%:*}" -v new_tag="${image##*:}" '
        /^  - name: / { inside = ($3 == name) }
        /^[^ ]/ { inside = 0 }
        inside && /^    newName: / { $0 = "    newName: " new_name }
        inside && /^    newTag: / { $0 = "    newTag: " new_tag }
        { print }
    ' "${overlay}/kustomization.yaml" > "${overlay}/kustomization.yaml.new"
    mv "${overlay}/kustomization.yaml.new" "${overlay}/kustomization.yaml"
fi
git -C "${overlay}" -c user.name=runbook -c user.email=runbook@localhost \
    commit -q -m "Roll ${env} back to ${image}" -- .

# Verify.
kubectl rollout status "${deployment}" -n "${namespace}" --timeout="${rollout_timeout}"
running="$(image_of)"
if [[ "${running}" != "${image}" ]]; then
    echo "${env} runs ${running}, expected ${image}" >&2
    exit 1
fi
