"""A warm Ansible process: it imports ansible-core and loads its plugins and collections
once, then runs each playbook the engine sends in a child forked from it.

Starting ``ansible-playbook`` costs about half a second of imports, plugin documentation and
inventory plugins before the first task; a fork of this process has all of it already. The
child is a fresh ``ansible-playbook`` in every way that matters: it gets its own session,
environment, working folder, output and ansible-core's process-wide state reset (the global
CLI arguments, the cached extra vars and option vars, the vault secrets), so a playbook never
sees the arguments, extra vars or check mode of the one before it. This process itself never
runs a playbook.

Two ways to live. ``SOCKET [CLIENTS]``: one run's worker, connected to the socket its engine
listens on, ending when the engine closes it. ``--serve SOCKET IDLE [CLIENTS]``: kept warm
between runs for one user: it listens on SOCKET (in a folder only that user can enter, and it
answers only that user's processes), serves any number of engines at once, and ends after
IDLE seconds with no engine connected, or when SOCKET is no longer its own. It holds no
run's environment, credentials or arguments: each request brings the child's own.

Protocol: the engine sends a request (a 4-byte length, then JSON: ``argv``, ``env``,
``cwd``) with file descriptors attached (SCM_RIGHTS): the write end of a pipe, which becomes
the child's stdout and stderr, and optionally the read end of a lifeline pipe whose other end
the engine holds while the playbook runs: when it closes (the engine ended, even by SIGKILL,
or stopped the step) the child ends its whole tree. This process answers with JSON lines
``{"ready": PID}`` first, then ``{"started": PID}`` and ``{"ended": PID, "rc": RC}``. Run as
``python -I host.py ...``; it imports nothing of the engine but the files it loads by their
paths: ``host_ansible.py`` (what it loads of Ansible, what a child resets), ``apprise_send.py``
and ``guard.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

_HEADER = struct.Struct("!I")
_MAX_REQUEST = 16 * 1024 * 1024
_REQUEST_TIMEOUT = 10.0  # seconds a kept worker waits for the rest of a request
_found: dict[str, list[Any] | None] = {}


# The engine's files this process loads by their paths, from the folder of this one.
_FILES = {"apprise_send": ("apprise_send.py",), "ansible": ("host_ansible.py",),
          "guard": ("..", "..", "system", "guard.py")}


def _beside(name: str) -> ModuleType:
    """A module of the engine that imports nothing of it, from its file (``python -I`` puts
    no script folder on the path); loaded once."""
    import importlib.util

    found = _found.get(name)
    if found:
        return found[0]  # type: ignore[no-any-return]
    spec = importlib.util.spec_from_file_location(
        f"_runbook_{name}", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         *_FILES[name]))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _found[name] = [module]
    return module


def _apprise_parts() -> tuple[Callable[[], None], ...]:
    """Apprise and each of its plugins, one part each, then its plugins registered."""
    def part(module: str | None) -> Callable[[], None]:
        return lambda: _beside("apprise_send").load(module)
    try:
        names = _beside("apprise_send").parts()
    except Exception:  # a message step says what is wrong with Apprise
        return ()
    return (*map(part, names), part(None))


def _client_parts() -> dict[str, Callable[[], tuple[Callable[[], None], ...]]]:
    """Each client a worker can load ahead, as its parts (Apprise among them)."""
    return {**_beside("ansible").PARTS, "apprise": _apprise_parts}


def _clients(which: list[str]) -> Any:
    """The thread that loads ``which`` (``host_clients.Clients``), not started."""
    parts = _client_parts()
    return _beside("ansible").Clients(part for name in which if name in parts
                                      for part in parts[name]())


# What a request may call in a child instead of a playbook: a message through Apprise.
_CALLS = {"apprise.known": ("apprise_send", "known"),
          "apprise.send_all": ("apprise_send", "send_all")}


def _hold_lifeline(fd: int) -> None:
    """End this playbook's whole tree (Ansible's workers start sessions of their own, so its
    descendants and the processes tagged with its run and step) once the engine's end of the
    lifeline closes: the engine ended, even by SIGKILL, or stopped the step."""
    guard = _beside("guard")
    if sys.platform == "linux":
        import ctypes

        # Orphans of the tree stay this process's descendants, so they are found.
        ctypes.CDLL(None, use_errno=True).prctl(guard._PR_SET_CHILD_SUBREAPER, 1)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        me = os.getpid()
        tags = {f"{name}={os.environ[name]}".encode() for name in guard.TAGS
                if name in os.environ}
        guard.stop_then_kill(lambda: guard.tree(me) | (guard.tagged(tags) if tags else set()))
        with contextlib.suppress(ChildProcessError):  # its own, reaped: no zombie is left
            while os.waitpid(-1, 0)[0]:
                pass
        os._exit(137)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _child(request: dict[str, Any], out: int, lifeline: int | None = None) -> None:
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
        if lifeline is not None:
            _hold_lifeline(lifeline)
        if "call" in request:
            # A function of the engine's instead of a playbook; its answer, as JSON, is
            # the last line it prints.
            module, function = _CALLS[request["call"]]
            answer = getattr(_beside(module), function)(*request["args"])
            print("\n" + json.dumps({"answer": answer}))
            rc = 0
            return
        _beside("ansible").reset()
        local_tmp = _beside("ansible").own_local_tmp()
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
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 2)
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


def _fork(request: dict[str, Any], fds: list[int], clients: Any,
          closing: list[int]) -> int:
    """A child for ``request`` (``fds``: its output, and its lifeline if sent), forked between
    two parts of the clients' loading; ``closing``: descriptors the child must not keep (the
    sockets of the worker and of other engines, other children's pidfds, its lock)."""
    with clients.paused():
        pid = os.fork()
        if pid == 0:
            for fd in closing:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _child(request, fds[0], fds[1] if len(fds) > 1 else None)
    for fd in fds:
        os.close(fd)
    return pid


def _one_run(path: str, which: list[str], known: bool) -> int:
    """One run's worker: serves the engine listening on ``path`` until it closes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    _beside("ansible").warm_up()
    _beside("ansible").callbacks_with_context()
    sys.stdout.flush()
    sys.stderr.flush()
    _send(sock, {"ready": os.getpid()})
    clients = _clients(which)
    if known:
        clients.start()
    while True:
        request, fds = _receive(sock)
        if request is None or len(fds) not in (1, 2):
            # The engine is done with it: no child runs, nothing to clean up but memory,
            # which the kernel frees faster than the interpreter's teardown would.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        pid = _fork(request, fds, clients, [sock.fileno()])
        _send(sock, {"started": pid})
        if not clients.is_alive() and clients.ident is None:
            clients.start()
        _, status = os.waitpid(pid, 0)
        _send(sock, {"ended": pid, "rc": os.waitstatus_to_exitcode(status)})


def _listen(path: str) -> tuple[socket.socket, int] | None:
    """The listening socket at ``path`` and the lock that makes this process the only worker
    there (held for its life); None when another worker has it."""
    lock = os.open(path.removesuffix(".sock") + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # Another worker: starting (it will listen), or ending (it will let go).
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
                os.close(lock)
                return None  # it answers: the engine that started this one connects there
            except OSError:
                if time.monotonic() > deadline:
                    os.close(lock)
                    return None
                time.sleep(0.05)
            finally:
                probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a worker that was killed: the lock says none is there
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener, lock


def _same_user(sock: socket.socket) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _serve(path: str, idle: float, which: list[str]) -> int:
    """Kept warm between runs: serve every engine that connects to ``path``, each request
    in a child of its own, until idle for ``idle`` seconds or ``path`` is not ours."""
    import selectors

    found = _listen(path)
    if found is None:
        print("exists", flush=True)
        return 0
    listener, lock = found
    mine = os.stat(path).st_ino
    # The engine that started this process reads this line and nothing after it: it connects
    # now, and its first request waits in the socket while this process loads.
    print(f"listening {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    _beside("ansible").warm_up()
    _beside("ansible").callbacks_with_context()
    # Its configuration is read; it holds no run's folder (each child goes to its own).
    os.chdir(os.path.dirname(path))
    clients = _clients(which)
    clients.start()
    selector = selectors.DefaultSelector()
    selector_fd = selector.fileno()
    selector.register(listener, selectors.EVENT_READ, None)
    engines: set[socket.socket] = set()
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd: pid, its engine
    quiet_since = time.monotonic()
    while True:
        if engines or children:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= idle or not _still_at(path, mine):
            if _still_at(path, mine):
                _remove_place(path)
            return 0
        for key, _ in selector.select(None if engines or children else
                                      min(5.0, max(0.0, quiet_since + idle - time.monotonic()))):
            if key.fileobj is listener:
                sock, _ = listener.accept()
                if not _same_user(sock):
                    sock.close()
                    continue
                try:
                    _send(sock, {"ready": os.getpid()})
                except OSError:  # gone before it was answered (its run ended at once)
                    sock.close()
                    continue
                engines.add(sock)
                selector.register(sock, selectors.EVENT_READ, "engine")
            elif key.data == "engine":
                sock = key.fileobj  # type: ignore[assignment]
                # A request comes whole at once: an engine stopped half-way through one (Ctrl-Z)
                # is dropped rather than holding every other engine's playbooks.
                sock.settimeout(_REQUEST_TIMEOUT)
                try:
                    request, fds = _receive(sock)
                except (OSError, ValueError):
                    request, fds = None, []
                finally:
                    sock.settimeout(None)
                if request is None or len(fds) not in (1, 2):
                    for fd in fds:
                        os.close(fd)
                    # Its child, if one runs, ends by its lifeline, closed with the engine.
                    selector.unregister(sock)
                    engines.discard(sock)
                    sock.close()
                    continue
                pid = _fork(request, fds, clients,
                            [listener.fileno(), selector_fd, lock,
                             *(e.fileno() for e in engines), *children])
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, sock)
                selector.register(pidfd, selectors.EVENT_READ, "child")
                with contextlib.suppress(OSError):
                    _send(sock, {"started": pid})
            else:
                pidfd = int(key.fd)
                pid, sock = children.pop(pidfd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                _remove_local_tmp(pid)
                if sock in engines:
                    with contextlib.suppress(OSError):
                        _send(sock, {"ended": pid, "rc": os.waitstatus_to_exitcode(status)})


def _remove_place(path: str) -> None:
    """The socket, the log and the home folder of the worker kept at ``path``."""
    base = path.removesuffix(".sock")
    for name in (path, base + ".log"):
        with contextlib.suppress(OSError):
            os.unlink(name)
    shutil.rmtree(base, ignore_errors=True)


def _still_at(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _remove_local_tmp(pid: int) -> None:
    """What a child killed before its own cleanup left of its local temporary folder (module
    payloads, with their arguments)."""
    from ansible import constants

    parent = os.path.dirname(str(constants.DEFAULT_LOCAL_TMP))
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            if name.startswith(f"ansible-local-{pid}"):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def main(argv: list[str]) -> int:
    usage = "usage: ansible_host.py SOCKET [CLIENT,...] | --serve SOCKET IDLE [CLIENT,...]"
    serve = bool(argv) and argv[0] == "--serve"
    if serve:
        argv = argv[1:]
    if not 1 + serve <= len(argv) <= 2 + serve:
        print(usage, file=sys.stderr)
        return 2
    # What the run's playbooks use, loaded from the start; when not known, the bare packages
    # once the first playbook runs.
    hint = argv[1 + serve] if len(argv) == 2 + serve else None
    which = [name for name in (hint or "").split(",") if name]
    if serve:
        # Kept for any run: every client, those this first run uses first.
        which += [name for name in _client_parts() if name not in which]
        return _serve(argv[0], float(argv[1]), which)
    return _one_run(argv[0], which if hint is not None else ["kubernetes", "aws"],
                    hint is not None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
