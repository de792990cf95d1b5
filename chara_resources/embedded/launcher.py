"""Start, find and stop the embedded BrainBox server (one per storage root, shared by runs).

Dagster runs are separate processes; the first one that needs BrainBox starts the server in
the background (its own session, so it outlives the run) and records it in ``server.json``;
later runs find it there, so models load once per server, not once per run.

``server.json`` keeps the port after the server stops, so that a restart (``chara brainbox
start``) comes back where running clients look for it; if another program has taken that port
meanwhile, the server starts on a free one, says so, and clients that re-read ``server.json``
(the BrainBox resource's do, while they retry) find it there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ..http import tls_context
from ..paths import atomic_write_json
from ..settings import PROJECT_ROOT
from .deciders import DEFAULT_DECIDERS

_MODULE = "chara_resources.embedded.server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerState:
    pid: int | None  # None: stopped (the port is kept for the next start)
    port: int
    deciders: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _MODULE.encode() in cmdline  # not some other process that reused the pid


def port_is_free(port: int) -> bool:
    """Whether a server can listen on 127.0.0.1:``port`` now (as uvicorn binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _heartbeat(url: str, timeout_s: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{url}/heartbeat", timeout=timeout_s, verify=tls_context())
        return response.status_code == 200
    except httpx.HTTPError:
        return False


class EmbeddedBrainBox:
    """The embedded server whose data (job database, cache) lives in ``folder``."""

    def __init__(self, folder: Path, deciders: list[str] | None = None) -> None:
        self.folder = folder
        self.deciders = list(deciders or DEFAULT_DECIDERS)
        self._state_file = folder / "server.json"

    def _recorded(self) -> ServerState | None:
        try:
            return ServerState(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def state(self) -> ServerState | None:
        """The server ``server.json`` records as started (not checked to be alive), or None."""
        state = self._recorded()
        return state if state is not None and state.pid is not None else None

    def recorded_url(self) -> str | None:
        """Where ``server.json`` says the server is (None when stopped): what a client that
        lost its connection reads before giving up."""
        state = self.state()
        return state.url if state is not None else None

    def previous_port(self) -> int | None:
        """The port of the last server started from this folder (kept after a stop)."""
        state = self._recorded()
        return state.port if state is not None else None

    def running_url(self) -> str | None:
        """The URL of a live server with our deciders, or None."""
        state = self.state()
        if state is None or state.deciders != self.deciders or not _is_our_server(state.pid):
            return None
        return state.url if _heartbeat(state.url) else None

    def ensure_running(
        self, timeout_s: float = 120.0, log: Callable[[str], None] | None = None
    ) -> str:
        """The URL of the running server, starting it if needed (safe across processes)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".launch.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            url = self.running_url()
            if url is None:
                self.stop()  # a stale server with other deciders, if any
                url = self.start(timeout_s=timeout_s, log=log)
            return url

    def start(
        self,
        port: int | None = None,
        timeout_s: float = 120.0,
        log: Callable[[str], None] | None = None,
    ) -> str:
        """Start the server on ``port``; by default on the port it had before (``server.json``),
        or, if another program listens there now, on a free port — said through ``log`` and in
        ``server.log`` — or on a free port for a first start."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if port is None:
            previous = self.previous_port()
            if previous is not None and not port_is_free(previous):
                note = (
                    f"the embedded BrainBox's port {previous} (in {self._state_file}) is taken "
                    "by another program; starting on a free port instead (runs that wait for "
                    "the server find the new port in server.json)"
                )
                with open(self.folder / "server.log", "a") as server_log:
                    server_log.write(f"chara: {note}\n")
                if log is not None:
                    log(note)
                previous = None
            port = previous or free_port()
        elif not port_is_free(port):
            raise RuntimeError(
                f"cannot start the embedded BrainBox on port {port}: another program listens there"
            )
        command = [sys.executable, "-m", _MODULE, "--port", str(port)]
        command += ["--data", str(self.folder / "data")]
        for spec in self.deciders:
            command += ["--decider", spec]
        paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        out = open(self.folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        out.close()
        state = ServerState(pid=process.pid, port=port, deciders=self.deciders)
        deadline = time.monotonic() + timeout_s
        while not _heartbeat(state.url, timeout_s=1.0):
            if process.poll() is not None:
                raise RuntimeError(
                    f"the embedded BrainBox exited at start (code {process.returncode}); "
                    f"see {self.folder / 'server.log'}"
                )
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"the embedded BrainBox did not answer within {timeout_s:.0f} s; "
                    f"see {self.folder / 'server.log'}"
                )
            time.sleep(0.1)
        atomic_write_json(self._state_file, asdict(state))
        return state.url

    def stop(self, grace_s: float = 5.0) -> bool:
        """Stop the recorded server (SIGTERM, then SIGKILL); True if one was running. The port
        stays in ``server.json`` for the next start."""
        state = self.state()
        if state is None:
            return False
        if not _is_our_server(state.pid):
            self._forget_pid(state)  # died on its own (killed, power cut)
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _is_our_server(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.05)
        if _is_our_server(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
        self._forget_pid(state)
        return True

    def _forget_pid(self, state: ServerState) -> None:
        atomic_write_json(self._state_file, {**asdict(state), "pid": None})


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
