"""The options of the plugins that call the Kubernetes API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - The kubeconfig file to connect with; else E(K8S_AUTH_KUBECONFIG), else E(KUBECONFIG).
    type: path
  context:
    description:
      - The kubeconfig's context; else E(K8S_AUTH_CONTEXT), else its current context.
    type: str
requirements:
  - kubernetes (the Python client)
"""
