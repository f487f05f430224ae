"""What the Ansible adapter hands Ansible, decided once for both ways of running a playbook (a
child of the warm worker, or ``ansible-playbook`` through ansible-runner): the environment a
playbook sees, what a kept worker's own environment holds, where Ansible keeps its files, its
settings, and where it finds collections.

A secret is named as the rest of the engine names one (``engine/trust/secrets.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.language import loader
from engine.trust.secrets import is_secret_name

# What a playbook may see of the engine's environment, besides the names its step lists.
PLAYBOOK_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "KUBECONFIG", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "VIRTUAL_ENV",
})
PLAYBOOK_ENV_PREFIXES = ("LC_", "AWS_", "K8S_AUTH_", "ANSIBLE_")
# Of that, what a kept worker's own environment holds: what ansible-core reads as it loads
# (its settings, locale, where its home is), never a run's credentials, tags or arguments.
WORKER_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                        "VIRTUAL_ENV", "AWS_DATA_PATH"})
WORKER_ENV_PREFIXES = ("LC_", "ANSIBLE_")
# ansible-core's own settings whose names say they hold a secret but hold a path or a yes/no,
# read as it loads (ANSIBLE_VAULT_PASSWORD_FILE, ANSIBLE_BECOME_ASK_PASS,
# ANSIBLE_GALAXY_TOKEN_PATH): the worker's, as any setting it reads then. Every other setting
# named as a secret (ANSIBLE_NET_PASSWORD, say) goes to each child only.
_READ_AS_IT_LOADS = re.compile(r"^ANSIBLE_\w*(_FILE|_PATH|ASK_PASS|ASK_VAULT_PASS)$")

# The same for every playbook, both ways.
SETTINGS = {
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_DEPRECATION_WARNINGS": "False",
}
COLLECTIONS_PATH = "ANSIBLE_COLLECTIONS_PATH"
# ansible-core's default beside its home (which is the engine's: ``home_env``).
_SYSTEM_COLLECTIONS = "/usr/share/ansible/collections"


def playbook_sees(name: str, named: Iterable[str] = ()) -> bool:
    """Whether a playbook sees the engine's variable ``name``; ``named``: those its step
    lists in ``env``."""
    return name in PLAYBOOK_ENV or name.startswith(PLAYBOOK_ENV_PREFIXES) or name in named


def playbook_env(prepared: Mapping[str, str], outer: Mapping[str, str],
                 named: Iterable[str], extra: Mapping[str, str]) -> dict[str, str]:
    """``prepared`` (ansible-runner's environment, or the engine's with the settings) without
    what ``outer`` (the engine's own environment) holds beyond what a playbook sees: only what
    was set for the playbook is kept. Then ``extra``."""
    keep = frozenset(named)
    env = {k: v for k, v in prepared.items()
           if playbook_sees(k, keep) or k not in outer or outer[k] != v}
    return {**env, **extra}


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """What of ``env`` a kept worker holds (and is told apart by): never its own home, which
    each kept worker has beside its socket (``home_env``)."""
    own_home = home_env(Path()).keys()
    return {name: value for name, value in env.items()
            if (name in WORKER_ENV or name.startswith(WORKER_ENV_PREFIXES))
            and playbook_sees(name) and name not in own_home
            and (not is_secret_name(name) or _READ_AS_IT_LOADS.match(name))}


def home_env(folder: Path) -> dict[str, str]:
    """Where Ansible keeps its files (module payloads, with their arguments): ``folder``, in
    memory, removed with it."""
    home = folder / ".ansible"
    return {"ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp")}


def collections_path(environ: Mapping[str, str]) -> str:
    """Where Ansible finds collections: ``collections/`` beside each folder the engine finds
    runbooks in (the checkout's ``runbooks/collections`` holds runbook.platform), then the
    user's ``ANSIBLE_COLLECTIONS_PATH`` or ansible-core's system folder. ansible-core looks
    in the ansible package's own collections (kubernetes.core, amazon.aws) after these."""
    ours = [str(folder.resolve() / "collections") for folder in loader.search_dirs("runbooks")
            if (folder / "collections").is_dir()]
    theirs = [p for p in (environ.get(COLLECTIONS_PATH) or _SYSTEM_COLLECTIONS).split(os.pathsep)
              if p]
    return os.pathsep.join(dict.fromkeys([*ours, *theirs]))


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The Ansible settings of every playbook, for an engine whose environment is
    ``environ``."""
    return {**SETTINGS, COLLECTIONS_PATH: collections_path(environ)}
