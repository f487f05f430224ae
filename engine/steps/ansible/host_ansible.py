"""Ansible in a warm worker: what it loads once (ansible-core's start-up, then the clients
for the tasks that run in Ansible's own processes, the project's action plugins, one part at
a time), and what a playbook's child resets to be a new ``ansible-playbook`` (ansible-core's
process-wide state, its own local temporary folder, an AWS session of its own). Loaded by
``host.py`` from its file, as ``host.py`` itself runs: it imports nothing of the engine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_found: dict[str, list[Any]] = {}


class Clients(threading.Thread):
    """Loads the AWS and Kubernetes clients for tasks that run in Ansible's own processes
    (action plugins), which a task would otherwise import in its own short-lived process each
    time: ``which`` in order (kubernetes; aws; ecr, rds: boto3 with that service's models).

    One part at a time, each under ``lock``: the worker forks a playbook between two parts
    (``paused``), never while one is half imported (the child would inherit a held import
    lock), and the loading goes on while the playbook runs."""

    def __init__(self, parts: Iterable[Callable[[], None]]) -> None:
        super().__init__(daemon=True)
        self.parts = list(parts)
        self.lock = threading.Lock()
        self.wanted = threading.Event()  # the worker waits to fork

    def run(self) -> None:
        for part in self.parts:
            while self.wanted.is_set():  # let a fork go first
                time.sleep(0.001)
            with self.lock, contextlib.suppress(ImportError):
                part()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.wanted.set()
        try:
            with self.lock:
                yield
        finally:
            self.wanted.clear()


def kubernetes() -> None:
    import kubernetes.client.exceptions
    import kubernetes.config
    import kubernetes.watch.watch  # noqa: F401


def aws_session() -> Any:
    # The service models and endpoint rules are read once into the data loader; a playbook's
    # process gets a session of its own that shares only this loader (``fresh_aws``).
    if not _found.get("aws_session"):
        import boto3

        session = boto3.session.Session()
        _found["aws_session"] = [session]
        _found["aws_loader"] = [session._session.get_component("data_loader")]
    return _found["aws_session"][0]


def aws_service(service: str) -> Callable[[], None]:
    def load() -> None:
        # Made to load its models, never used: no credentials are looked up or sent.
        aws_session().client(service, region_name="us-east-1", aws_access_key_id="unused",
                              aws_secret_access_key="unused")  # noqa: S106
    return load


# Each client by the name the engine gives it, as the parts it is loaded in.
PARTS: dict[str, Callable[[], tuple[Callable[[], None], ...]]] = {
    "kubernetes": lambda: (kubernetes,), "aws": lambda: (aws_session,),
    "ecr": lambda: (aws_service("ecr"),), "rds": lambda: (aws_service("rds"),)}


def fresh_aws() -> None:
    """boto3's default session made anew for a playbook, from its own environment (region,
    profile, credentials), with the loaded models of the worker's: when a task first asks for
    it (``boto3.client`` makes the default session through ``setup_default_session``), so a
    playbook that never calls AWS does not pay for one (about 10 ms)."""
    loader = _found.get("aws_loader")
    if not loader:
        return
    import boto3
    import botocore.session

    def setup_default_session(**kwargs: Any) -> None:
        core = botocore.session.Session()
        core.register_component("data_loader", loader[0])
        boto3.DEFAULT_SESSION = boto3.session.Session(botocore_session=core, **kwargs)

    boto3.DEFAULT_SESSION = None
    boto3.setup_default_session = setup_default_session


def warm_up() -> None:
    """What every ``ansible-playbook`` loads before its first task, loaded once."""
    import ansible.cli.playbook  # constants, config, the CLI and what it imports
    import ansible.executor.playbook_executor
    import ansible.executor.process.worker
    import ansible.executor.task_queue_manager
    import ansible.playbook
    import ansible.template  # noqa: F401
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins import loader

    loader.init_plugin_loader([])
    # What a playbook run loads with every plugin's documented options (parsing that YAML is
    # most of its start-up): connection, shell and become plugins, callbacks, vars plugins.
    for plugin_loader in (loader.connection_loader, loader.shell_loader, loader.become_loader,
                          loader.callback_loader, loader.vars_loader):
        list(plugin_loader.all(class_only=True))
    for plugin_loader, name in ((loader.strategy_loader, "linear"),
                                (loader.action_loader, "normal"),
                                (loader.action_loader, "set_stats"),
                                (loader.action_loader, "command")):
        plugin_loader.get(name, class_only=True)
    # The inventory plugins and their documented options, read by every inventory parse.
    InventoryManager(loader=DataLoader(), sources=["localhost,"])
    # Jinja2's filters and tests (the first use of any wraps every builtin one) and ansible's
    # lexer: each task's process would otherwise make them for its first templated argument.
    # A playbook with filter or test plugins of its own adds their folder, which starts the
    # wrapping again in its process.
    from ansible.template import Templar, trust_as_template

    loader.filter_loader.get("default")
    loader.test_loader.get("failed")
    Templar(loader=DataLoader(), variables={"x": 1}).template(
        trust_as_template("{{ x | default(0, true) is number }}"))


def reset() -> None:
    """ansible-core's process-wide state, as a new ``ansible-playbook`` process has it."""
    from ansible import context
    from ansible.parsing.vault import VaultSecretsContext
    from ansible.utils import vars as ansible_vars
    from ansible.utils.context_objects import CLIArgs, GlobalCLIArgs

    GlobalCLIArgs._Singleton__instance = None
    context.CLIARGS = CLIArgs({})
    for function, cached in ((ansible_vars.load_extra_vars, "extra_vars"),
                             (ansible_vars.load_options_vars, "options_vars")):
        if hasattr(function, cached):
            delattr(function, cached)
    VaultSecretsContext._current = None
    fresh_aws()
    # Play and task ids: unique per process, as they would be in a new ansible-playbook.
    ansible_vars.cur_id = 0
    ansible_vars.random_int = f"{secrets.randbelow(2**32):08x}"
    # ansible-runner's event callback reads where to leave its data when it is imported, which
    # this process did before any playbook had a folder: it reads it again now.
    for module in callbacks_with_context():
        setattr(module, "event_context", module.EventContext())  # noqa: B010
    # This process configured the collection finder already; the CLI's second call says so.
    warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already been")


def own_local_tmp() -> str:
    """A local temporary folder of this playbook's own (module payloads, decrypted vault
    files, the ssh agent's socket), removed when it ends, as a new ``ansible-playbook``
    has; the one ansible-core made when this process imported it is the worker's."""
    from ansible import constants

    parent = os.path.dirname(str(constants.DEFAULT_LOCAL_TMP))
    mine = tempfile.mkdtemp(prefix=f"ansible-local-{os.getpid()}", dir=parent)
    constants.DEFAULT_LOCAL_TMP = mine
    return mine


def callbacks_with_context() -> list[Any]:
    """ansible-runner's event callback modules this process has loaded (found once)."""
    found = _found.get("callbacks")
    if found is None:
        found = _found["callbacks"] = [
            module for module in list(sys.modules.values())
            if str(getattr(module, "__file__", "")).endswith("awx_display.py")
            and hasattr(module, "EventContext")]
    return found
