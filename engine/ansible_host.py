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
import traceback
import warnings
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


def _warm_clients() -> None:
    """The AWS and Kubernetes clients, for tasks that run in Ansible's own processes (action
    plugins): imported while the first playbook runs, so it does not wait for them."""
    for name in ("boto3", "botocore.session", "kubernetes.client"):
        with contextlib.suppress(ImportError):
            __import__(name)


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
    if len(argv) != 1:
        print("usage: ansible_host.py SOCKET", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(argv[0])
    _warm()
    _callbacks_with_context()
    sys.stdout.flush()
    sys.stderr.flush()
    _send(sock, {"ready": os.getpid()})
    clients: threading.Thread | None = None
    while True:
        request, fds = _receive(sock)
        if request is None or len(fds) != 1:
            # The engine is done with it: no child runs, nothing to clean up but memory,
            # which the kernel frees faster than the interpreter's teardown would.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        if clients is not None:
            clients.join()  # a fork while another thread imports could copy a held lock
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds[0])
        os.close(fds[0])
        _send(sock, {"started": pid})
        if clients is None:
            clients = threading.Thread(target=_warm_clients, daemon=True)
            clients.start()
        _, status = os.waitpid(pid, 0)
        _send(sock, {"ended": pid, "rc": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
