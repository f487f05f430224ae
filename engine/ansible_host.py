"""A warm Ansible process for one run: it imports ansible-core and loads its plugins and
collections once, then runs each playbook the engine sends in a child forked from it.

Starting ``ansible-playbook`` costs about half a second of imports, plugin documentation and
inventory plugins before the first task; a fork of this process has all of it already. The
child is a fresh ``ansible-playbook`` in every way that matters: it gets its own session,
environment, working folder, output and ansible-core's process-wide state reset (the global
CLI arguments, the cached extra vars and option vars, the vault secrets), so a playbook never
sees the arguments, extra vars or check mode of the one before it. This process itself never
runs a playbook.

Protocol, over the Unix socket named on the command line: the engine sends a request (a
4-byte length, then JSON: ``argv``, ``env``, ``cwd``) with the write end of a pipe attached
(SCM_RIGHTS), which becomes the child's stdout and stderr; this process answers with JSON
lines ``{"started": PID}`` and ``{"ended": PID, "rc": RC}``. It ends when the engine closes
the socket. Run as ``python -I ansible_host.py SOCKET``; it imports nothing of the engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

_HEADER = struct.Struct("!I")
_MAX_REQUEST = 16 * 1024 * 1024
_found: dict[str, list[Any] | None] = {"callbacks": None}


def _warm() -> None:
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


class _Clients(threading.Thread):
    """Loads the AWS and Kubernetes clients for tasks that run in Ansible's own processes
    (action plugins), which a task would otherwise import in its own short-lived process each
    time: ``which`` in order (kubernetes; aws; ecr, rds: boto3 with that service's models).

    One part at a time, each under ``lock``: the worker forks a playbook between two parts
    (``paused``), never while one is half imported (the child would inherit a held import
    lock), and the loading goes on while the playbook runs."""

    def __init__(self, which: list[str]) -> None:
        super().__init__(daemon=True)
        self.parts = [part for name in which for part in _CLIENT_PARTS.get(name, ())]
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


def _kubernetes() -> None:
    import kubernetes.client.exceptions
    import kubernetes.config
    import kubernetes.watch.watch  # noqa: F401


def _aws_session() -> Any:
    # The service models and endpoint rules are read once into the data loader; a playbook's
    # process gets a session of its own that shares only this loader (``_fresh_aws``).
    if not _found.get("aws_session"):
        import boto3

        session = boto3.session.Session()
        _found["aws_session"] = [session]
        _found["aws_loader"] = [session._session.get_component("data_loader")]
    return _found["aws_session"][0]  # type: ignore[index]


def _aws_service(service: str) -> Callable[[], None]:
    def load() -> None:
        # Made to load its models, never used: no credentials are looked up or sent.
        _aws_session().client(service, region_name="us-east-1", aws_access_key_id="unused",
                              aws_secret_access_key="unused")  # noqa: S106
    return load


_CLIENT_PARTS: dict[str, tuple[Callable[[], None], ...]] = {
    "kubernetes": (_kubernetes,), "aws": (_aws_session,),
    "ecr": (_aws_service("ecr"),), "rds": (_aws_service("rds"),)}


def _fresh_aws() -> None:
    """boto3's default session made anew for a playbook, from its own environment (region,
    profile, credentials), with the loaded models of the worker's."""
    loader = _found.get("aws_loader")
    if not loader:
        return
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.register_component("data_loader", loader[0])
    boto3.DEFAULT_SESSION = boto3.session.Session(botocore_session=core)


def _reset() -> None:
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
    _fresh_aws()
    # Play and task ids: unique per process, as they would be in a new ansible-playbook.
    ansible_vars.cur_id = 0
    ansible_vars.random_int = f"{secrets.randbelow(2**32):08x}"
    # ansible-runner's event callback reads where to leave its data when it is imported, which
    # this process did before any playbook had a folder: it reads it again now.
    for module in _callbacks_with_context():
        setattr(module, "event_context", module.EventContext())  # noqa: B010
    # This process configured the collection finder already; the CLI's second call says so.
    warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already been")


def _own_local_tmp() -> str:
    """A local temporary folder of this playbook's own (module payloads, decrypted vault
    files, the ssh agent's socket), removed when it ends, as a new ``ansible-playbook``
    has; the one ansible-core made when this process imported it is the worker's."""
    from ansible import constants

    parent = os.path.dirname(str(constants.DEFAULT_LOCAL_TMP))
    mine = tempfile.mkdtemp(prefix=f"ansible-local-{os.getpid()}", dir=parent)
    constants.DEFAULT_LOCAL_TMP = mine
    return mine


def _callbacks_with_context() -> list[Any]:
    """ansible-runner's event callback modules this process has loaded (found once)."""
    found = _found.get("callbacks")
    if found is None:
        found = _found["callbacks"] = [
            module for module in list(sys.modules.values())
            if str(getattr(module, "__file__", "")).endswith("awx_display.py")
            and hasattr(module, "EventContext")]
    return found


def _child(request: dict[str, Any], out: int) -> None:
    """Become ``ansible-playbook ARGV`` with the request's environment; never returns."""
    rc = 250
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(devnull)
        # As any Python program starts: Ctrl-C raises, SIGPIPE is ignored (a closed pipe is
        # an error a connection plugin handles, not the end of the process).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _reset()
        local_tmp = _own_local_tmp()
        from ansible.cli.playbook import PlaybookCLI

        try:
            PlaybookCLI.cli_executor(list(request["argv"]))
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        finally:
            shutil.rmtree(local_tmp, ignore_errors=True)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
    if not data:
        return None, fds
    while len(data) < _HEADER.size:
        more = sock.recv(65536)
        if not more:
            return None, fds
        data += more
    (length,) = _HEADER.unpack_from(data)
    if length > _MAX_REQUEST:
        raise ValueError(f"a request of {length} bytes")
    body = data[_HEADER.size:]
    while len(body) < length:
        more = sock.recv(min(65536, length - len(body)))
        if not more:
            return None, fds
        body += more
    return json.loads(body.decode("utf-8")), fds


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: ansible_host.py SOCKET [CLIENT,...]", file=sys.stderr)
        return 2
    # What the run's playbooks use, loaded from the start; when not known, the bare packages
    # once the first playbook runs.
    known = len(argv) == 2
    which = [name for name in argv[1].split(",") if name] if known else ["kubernetes", "aws"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(argv[0])
    _warm()
    _callbacks_with_context()
    sys.stdout.flush()
    sys.stderr.flush()
    _send(sock, {"ready": os.getpid()})
    clients = _Clients(which)
    if known:
        clients.start()
    while True:
        request, fds = _receive(sock)
        if request is None or len(fds) != 1:
            # The engine is done with it: no child runs, nothing to clean up but memory,
            # which the kernel frees faster than the interpreter's teardown would.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        with clients.paused():
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(request, fds[0])
        os.close(fds[0])
        _send(sock, {"started": pid})
        if not clients.is_alive() and clients.ident is None:
            clients.start()
        _, status = os.waitpid(pid, 0)
        _send(sock, {"ended": pid, "rc": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
