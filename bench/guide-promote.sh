#!/usr/bin/env bash
# The promotion guide's commands as one script: the baseline bench/promote.py measures the
# promote runbook against. It does the runbook's work on the sandbox: read the image the
# source runs (and what the target runs), copy the image's manifest to the target's tag in ECR
# (the runbook's retag, not the guide's docker pull/tag/push), set the tag in the target's
# overlay and commit it, apply the overlay and wait for the rollout. SERVICE (default api) is
# the sandbox's service promoted (api, web or worker): a release of three is the script run
# once for each, as a person following the guide would; a tag already there on the same image
# is not copied again, an overlay already naming it not committed again.
#
# Usage: eval "$(runbook sandbox env --dir SANDBOX_DIR)"
#        bench/guide-promote.sh SANDBOX_DIR FROM TO [SERVICE]   e.g. .runbook/sandbox uat1 staging
set -euo pipefail

if [[ $# -ne 3 && $# -ne 4 ]]; then
    echo "usage: $0 SANDBOX_DIR FROM TO [SERVICE]" >&2
    exit 2
fi
sandbox="$1"
from="$2"
to="$3"
service="${4:-api}"
if [[ -z "${KUBECONFIG:-}" || -z "${AWS_ENDPOINT_URL:-}" ]]; then
    echo "$0: KUBECONFIG and AWS_ENDPOINT_URL are not set: export the sandbox's" \
        "variables first: eval \"\$(runbook sandbox env)\"" >&2
    exit 2
fi
repository="quikapp/${service}"
container="${service}"
overlay="${sandbox}/k8s/overlays/${to}"
rollout_timeout="60s"

image_of() {  # the image of the deployment's container
    kubectl get "deployment/$1-quikapp-${service}" -n "quikapp-$1" \
        -o "jsonpath={.spec.template.spec.containers[?(@.name==\"${container}\")].image}"
}

# 1. Verify the source environment: the image it runs, and what the target runs now.
source_image="$(image_of "${from}")"
target_before="$(image_of "${to}")"
echo "${from} runs ${source_image}; ${to} runs ${target_before}"
image_name="${source_image%:*}"          # the registry's name of quikapp/api
source_tag="${source_image##*:}"
target_tag="${to}-${source_tag#"${from}-"}"  # uat1-1.4.2 → staging-1.4.2, as the runbook does

# 2. Tag the image for the target: a manifest copy in ECR.
manifest="$(aws ecr batch-get-image --repository-name "${repository}" \
    --image-ids "imageTag=${source_tag}" --query 'images[0].imageManifest' --output text)"
if [[ -z "${manifest}" || "${manifest}" == "None" ]]; then
    echo "${repository}:${source_tag} is not in ECR" >&2
    exit 1
fi
existing="$(aws ecr batch-get-image --repository-name "${repository}" \
    --image-ids "imageTag=${target_tag}" --query 'images[0].imageManifest' --output text)"
if [[ "${existing}" == "${manifest}" ]]; then
    echo "${repository}:${target_tag} is there already"
else
    aws ecr put-image --repository-name "${repository}" --image-tag "${target_tag}" \
        --image-manifest "${manifest}" --query 'image.imageId.imageDigest' --output text
fi

# 3. Deploy to the target: set the image in its overlay, commit it, apply, wait.
if command -v kustomize >/dev/null; then
    (cd "${overlay}" && kustomize edit set image "${repository}=${image_name}:${target_tag}")
else
    # kustomize edit set image, for an overlay whose images entry is name/newName/newTag
    # (kubectl has kustomize's build, not its edit).
    awk -v name="${repository}" -v new_name="${image_name}" -v new_tag="${target_tag}" '
        /^  - name: / { inside = ($3 == name) }
        /^[^ ]/ { inside = 0 }
        inside && /^    newName: / { $0 = "    newName: " new_name }
        inside && /^    newTag: / { $0 = "    newTag: " new_tag }
        { print }
    ' "${overlay}/kustomization.yaml" > "${overlay}/kustomization.yaml.new"
    mv "${overlay}/kustomization.yaml.new" "${overlay}/kustomization.yaml"
fi
if ! git -C "${overlay}" diff --quiet -- .; then
    git -C "${overlay}" -c user.name=runbook -c user.email=runbook@localhost \
        commit -q -m "Promote ${target_tag} to ${to} from ${from}" -- .
fi
# The sandbox's Kubernetes emulator serves no OpenAPI schema for kubectl to validate against.
kubectl apply -k "${overlay}" --validate=false
kubectl rollout status "deployment/${to}-quikapp-${service}" -n "quikapp-${to}" \
    --timeout="${rollout_timeout}"
running="$(image_of "${to}")"
if [[ "${running}" != "${image_name}:${target_tag}" ]]; then
    echo "${to} runs ${running}, expected ${image_name}:${target_tag}" >&2
    exit 1
fi
echo "${to} runs ${running}"
