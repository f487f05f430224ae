"""The options of the plugins that call AWS."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  region:
    description:
      - The AWS region; else boto3's (E(AWS_REGION), E(AWS_DEFAULT_REGION), the profile).
    type: str
  endpoint_url:
    description:
      - The service's endpoint, for an emulator such as moto's server; else AWS's own.
    type: str
requirements:
  - boto3
"""
