"""Which clients a playbook's tasks use, read from its tasks' modules by their full names."""

from __future__ import annotations

from engine.steps.ansible import clients


def test_each_plugin_and_bundled_namespace_names_its_clients() -> None:
    assert clients.of_module("runbook.platform.k8s_deployment") == ("kubernetes",)
    assert clients.of_module("runbook.platform.ecr_retag") == ("ecr",)
    assert clients.of_module("runbook.platform.kustomize_image") == ()
    assert clients.of_module("kubernetes.core.k8s_info") == ("kubernetes",)
    assert clients.of_module("amazon.aws.s3_object") == ("aws",)
    assert clients.of_module("amazon.aws.rds_instance_info") == ("aws", "rds")
    assert clients.of_module("ansible.builtin.copy") == ()


def test_tasks_in_blocks_and_action_forms_are_read_and_words_elsewhere_are_not() -> None:
    playbook = """
- hosts: localhost
  vars:
    note: "runbook.platform.k8s_rollout: in a string is not a task"
    secret: !vault |
      $ANSIBLE_VAULT;1.1;AES256
      6162
  pre_tasks:
    - action: amazon.aws.ecr_image_info repository_name=x
  tasks:
    - name: k8s_deployment without its collection is not the plugin
      k8s_deployment: {namespace: n, name: d}
    - block:
        - runbook.platform.rds_snapshot_choose: {instance: "{{ i | default('x') }}"}
      rescue:
        - local_action: {module: kubernetes.core.k8s_info, kind: Pod}
      always:
        - ansible.builtin.debug: {msg: done}
      when: true
"""
    assert clients.of_playbook(playbook) == ["aws", "ecr", "rds", "kubernetes"]
