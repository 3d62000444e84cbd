"""Process stage: the rules `cibridge serve` validated, handed to its children so they do not
validate them again.

Input: the supervisor's accepted `Config`. Output: in a child (`cibridge web`, `cibridge dispatch`
under `cibridge serve`), that same Config, or None (then the child loads the rules itself, as it
does when started alone). The Config holds secrets, so it never touches a disk: the supervisor
pickles it into a sealed memfd (anonymous memory) and passes that fd over a socketpair it made
for each child, inherited at its start (file descriptor number in $BRIDGE_RULES_CHANNEL); a
message follows each accepted reload, before the child's SIGHUP. A child unpickles only a sealed
`bridge-rules` memfd that came through that socket from its own parent, only classes of the
bridge and a few builtins, and only when its version is the accepted one (the snapshot's).
"""
from __future__ import annotations

import array
import fcntl
import io
import json
import logging
import os
import pickle
import select
import socket
import stat
import struct

from bridge.config.load import forget_shared, paused_gc
from bridge.config.model import Config
from bridge.config.snapshot import load_with_fallback, read_status, snapshot_source, warn_if_edited

log = logging.getLogger("bridge.serve")

#: Set by the supervisor in a child's environment: the file descriptor of its end of the channel.
CHANNEL = "BRIDGE_RULES_CHANNEL"
MEMFD_NAME = "bridge-rules"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_MAX_HEADER = 4096


# --- the supervisor's side -------------------------------------------------------------------

class Handover:
    """The accepted rules as a sealed memfd, and one channel per child to send it on."""

    def __init__(self):
        self.memfd: int | None = None
        self.header = b""
        self.channels: dict[str, socket.socket] = {}

    def publish(self, config: Config) -> None:
        """The rules to hand over from now on (at start, after each accepted reload)."""
        data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
        fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        except BaseException:
            os.close(fd)
            raise
        if self.memfd is not None:
            os.close(self.memfd)
        self.memfd = fd
        self.header = json.dumps({"version": config.version, "size": len(data)}).encode()

    def channel(self, role: str) -> socket.socket:
        """A new channel for a child about to start, the current rules already in it: the
        child's end (to pass to it, then close here)."""
        old = self.channels.pop(role, None)
        if old is not None:
            old.close()
        # Messages with their boundaries, and an end of file when this process is gone.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.channels[role] = ours
        self.send(role)
        return theirs

    def send(self, role: str) -> bool:
        """The current rules to `role`'s channel (before its SIGHUP); False if they could not
        go (the child then loads the snapshot itself)."""
        sock = self.channels.get(role)
        if sock is None or self.memfd is None:
            return False
        try:
            socket.send_fds(sock, [self.header], [self.memfd])
            return True
        except OSError as exc:      # a child that reads nothing (its queue full), or gone
            log.warning("could not hand the rules to %s: %s; it loads them itself", role, exc)
            return False

    def close(self) -> None:
        for sock in self.channels.values():
            sock.close()
        self.channels.clear()
        if self.memfd is not None:
            os.close(self.memfd)
            self.memfd = None


# --- a child's side --------------------------------------------------------------------------

_channel: list = []     # [socket] once taken from the environment, [None] when there is none


def _take_channel() -> socket.socket | None:
    """Our end of the channel, once: its number leaves the environment (nothing we start
    inherits it) and the fd stays out of every program we exec."""
    if _channel:
        return _channel[0]
    value = os.environ.pop(CHANNEL, None)
    sock = None
    if value:
        try:
            fd = int(value)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise ValueError("not a socket")
            sock = socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
            if sock.family != socket.AF_UNIX:
                raise ValueError("not a unix socket")
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
            if pid != os.getppid() or uid != os.getuid():
                raise ValueError("not made by our parent process")
        except (ValueError, OSError) as exc:
            log.warning("$%s=%s is no rules channel from cibridge serve (%s); ignored", CHANNEL,
                        value, exc)
            sock = None
    _channel.append(sock)
    return sock


def _latest(wait: bool = False) -> tuple[dict, int] | None:
    """The last message waiting on the channel: (header, memfd); earlier ones are closed.
    `wait`: until one comes (a child's start: `cibridge serve` validates the rules while the
    child imports its code) or the supervisor is gone (SystemExit)."""
    sock = _take_channel()
    if sock is None:
        return None
    if wait:
        select.select([sock], [], [])
    latest = None
    while True:
        try:
            msg, fds = _recv(sock)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            log.warning("the rules channel failed: %s", exc)
            break
        if not msg and not fds:         # the supervisor's end is closed
            if wait and latest is None:
                log.error("cibridge serve stopped before it handed over the rules; exiting")
                raise SystemExit(1)
            break
        if latest is not None:
            os.close(latest[1])
        for extra in fds[1:]:
            os.close(extra)
        latest = (msg, fds[0]) if fds else None
    if latest is None:
        return None
    msg, fd = latest
    try:
        return json.loads(msg), fd
    except ValueError:
        os.close(fd)
        return None


def _recv(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and its file descriptors, without waiting (socket.recv_fds ignores its flags
    before Python 3.12); the fds close on exec."""
    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(_MAX_HEADER, socket.CMSG_SPACE(4 * fds.itemsize),
                                      socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


class _RulesUnpickler(pickle.Unpickler):
    """Only the bridge's own classes and a few plain builtins: the stream comes from our parent,
    and even so nothing else is ever constructed."""

    _BUILTINS = {"frozenset", "set", "tuple", "list", "dict", "bytes", "bytearray", "str", "int",
                 "float", "bool", "complex", "slice", "range", "object"}
    _STDLIB = {("re", "_compile"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
               ("pathlib", "PosixPath"), ("pathlib", "Path")}

    def find_class(self, module, name):
        if module == "bridge" or module.startswith("bridge."):
            return super().find_class(module, name)
        if (module == "builtins" and name in self._BUILTINS) or (module, name) in self._STDLIB:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the handed-over rules")


def _read_memfd(fd: int, size: int) -> bytes:
    target = os.readlink(f"/proc/self/fd/{fd}")
    if not target.startswith(f"/memfd:{MEMFD_NAME} "):
        raise ValueError(f"not the supervisor's rules memfd ({target})")
    if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _SEALS != _SEALS:
        raise ValueError("the rules memfd is not sealed")
    if os.fstat(fd).st_size != size:
        raise ValueError("the rules memfd's size differs from its header's")
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 22), offset)
        if not chunk:
            raise ValueError("the rules memfd ended early")
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def received_at_start(rules_path, state_dir) -> Config | None:
    """A child's rules at its start, when `cibridge serve` handed them over (else None: the
    child loads the accepted rules itself), with load_accepted's warnings. A child of
    `cibridge serve` waits for them; it exits 1 if the supervisor stops first."""
    handed = receive(state_dir, wait=True)
    if handed is None:
        return None
    config, problems = handed
    if problems:
        log.warning("the last reload of %s was refused; starting on the last good rules (version %s)",
                    rules_path, config.version, extra={"problems": problems[:5]})
    else:
        warn_if_edited(rules_path, config)
    return config


def reloaded(rules_path, state_dir) -> Config:
    """The accepted rules after a reload: those `cibridge serve` validated and handed over, else
    (started alone, or what waits is not the accepted version) loaded here. Raises ConfigError."""
    handed = receive(state_dir)
    return handed[0] if handed else load_with_fallback(rules_path, state_dir)[0]


def receive(state_dir, *, expected: str | None = None,
            wait: bool = False) -> tuple[Config, list[str]] | None:
    """(config, problems) handed over by `cibridge serve`, if it is the accepted version
    (`expected`, default the snapshot's); None when this process was not started with a channel,
    nothing is waiting, or what waits is not the accepted version: the caller loads the rules
    itself. `problems`: why the last reload was refused (rules-status.json), if it was."""
    got = _latest(wait)
    if got is None:
        return None
    header, fd = got
    try:
        if expected is None:
            expected = (snapshot_source(state_dir) or {}).get("version")
        if not expected or header.get("version") != expected:
            log.info("the handed-over rules (version %s) are not the accepted ones (%s); loading "
                     "those", header.get("version"), expected)
            return None
        data = _read_memfd(fd, int(header.get("size", -1)))
        forget_shared()       # the pattern lists the unpickling shares: this version's only
        with paused_gc():
            config = _RulesUnpickler(io.BytesIO(data)).load()
    except (OSError, ValueError, TypeError, pickle.UnpicklingError, AttributeError, EOFError,
            ImportError) as exc:
        log.warning("the rules handed over by cibridge serve cannot be used (%s); loading them "
                    "here", exc)
        return None
    finally:
        os.close(fd)
    if not isinstance(config, Config) or config.version != expected:
        log.warning("the rules handed over by cibridge serve are not the accepted version; "
                    "loading them here")
        return None
    status = read_status(state_dir) or {}
    problems = [] if status.get("ok", True) else list(status.get("problems") or [])
    log.info("rules version %s handed over by cibridge serve (validated there, not here)",
             config.version)
    return config, problems
