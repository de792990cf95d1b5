"""Start, find and stop the embedded BrainBox server (one per storage root, shared by runs).

Dagster runs are separate processes; the first one that needs BrainBox starts the server in
the background (its own session, so it outlives the run) and records it in ``server.json``;
later runs find it there, so models load once per server, not once per run.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

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
    pid: int
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


def _heartbeat(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/heartbeat", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


class EmbeddedBrainBox:
    """The embedded server whose data (job database, cache) lives in ``folder``."""

    def __init__(self, folder: Path, deciders: list[str] | None = None) -> None:
        self.folder = folder
        self.deciders = list(deciders or DEFAULT_DECIDERS)
        self._state_file = folder / "server.json"

    def state(self) -> ServerState | None:
        try:
            return ServerState(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def running_url(self) -> str | None:
        """The URL of a live server with our deciders, or None."""
        state = self.state()
        if state is None or state.deciders != self.deciders or not _is_our_server(state.pid):
            return None
        return state.url if _heartbeat(state.url) else None

    def ensure_running(self, timeout_s: float = 120.0) -> str:
        """The URL of the running server, starting it if needed (safe across processes)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".launch.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            url = self.running_url()
            if url is None:
                self.stop()  # a stale server with other deciders, if any
                url = self.start(timeout_s=timeout_s)
            return url

    def start(self, port: int | None = None, timeout_s: float = 120.0) -> str:
        port = port or free_port()
        command = [sys.executable, "-m", _MODULE, "--port", str(port)]
        command += ["--data", str(self.folder / "data")]
        for spec in self.deciders:
            command += ["--decider", spec]
        paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - handed to the child
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
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
        """Stop the recorded server (SIGTERM, then SIGKILL); True if one was running."""
        state = self.state()
        if state is None or not _is_our_server(state.pid):
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _is_our_server(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.05)
        if _is_our_server(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
        self._state_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
