"""kaia-avatar 5.2.0 as the assistant runs it, for the Avatar contract tests.

:func:`contract_avatar` starts the real ``AvatarServer`` (``tests.avatar_server``) and kaia's
own ``AvatarDaemon`` with the services chara feeds (``tests.contract.avatar_daemon``) as local
processes on loopback, and :class:`ContractAvatar` talks to them the way the assistant's parts
do: messages on Avatar's bus, files in its folders. Facts about how kaia configures them:
docs/kaia-5.2-servers.md (§4, "The daemon and its services, as the assistant runs them").

The daemon's services call a BrainBox for their models (Resemblyzer, InsightFace): the tests
give them kaia's own contract BrainBox (``brainbox_url``) with its cache folder
(``brainbox_cache``). kaia's own app gives Avatar BrainBox's cache folder as its cache, because
the services hand Avatar's file names to BrainBox as BrainBox file names, so the two servers
must share that folder here too.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chara_resources.embedded.launcher import free_port
from chara_resources.settings import PROJECT_ROOT
from tests.dagster_dev import stop_group


def _wait_for(url: str, process: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"{what} exited at start"
        try:
            if httpx.get(f"{url}/heartbeat", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} did not start in {timeout_s} s"
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    """Stop a process group we started, by its id."""
    if process.poll() is None:
        stop_group(process)


def _start(module: str, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class ContractAvatar:
    """The running Avatar server and daemon, and a client on the daemon's session."""

    url: str
    folder: Path  # resources/ (the daemon reads it from disk) and the logs
    cache: Path  # Avatar's cache: BrainBox's cache folder
    brainbox_url: str
    character: str  # the character of the daemon's state, as kaia's settings name it
    server: subprocess.Popen
    daemon: subprocess.Popen | None = None
    errors: list[Any] = field(default_factory=list)  # ExceptionEvents of other services
    _client: Any = field(default=None, repr=False)

    @property
    def resources(self) -> Path:
        return self.folder / "resources"

    @property
    def client(self):
        if self._client is None:
            from avatar.app import AvatarApi

            self._client = AvatarApi(self.url).create_client()
        return self._client

    def start_daemon(self) -> None:
        """Start the daemon and send the InitializationEvent on which every service loads its
        resource files (they read them at no other time)."""
        from avatar.daemon import InitializationEvent

        assert self.daemon is None or self.daemon.poll() is not None, "the daemon runs"
        self.client.set_last_id(self._last_id())
        self.daemon = _start(
            "tests.contract.avatar_daemon",
            self.url,
            self.brainbox_url,
            str(self.resources),
            self.character,
            log=self.folder / "daemon.log",
        )
        self.push(InitializationEvent())

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            _stop(self.daemon)

    def push(self, message: Any) -> Any:
        self.client.push(message)
        return message

    def _last_id(self) -> str | None:
        tail = self.client.tail(1)
        return tail[-1].envelop.id if tail else None

    def wait_for(self, accept, what: str, services: tuple[str, ...], timeout_s: float = 60.0):
        """The first message on the bus (after those already read) for which ``accept`` is
        true. An ``ExceptionEvent`` from one of ``services`` (or BrainBoxService, which they
        call) fails at once with its traceback; those of other services are kept in
        ``errors`` (a service with nothing to load may fail its initialisation, as in kaia)."""
        from avatar.messaging import ExceptionEvent

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.client.pull(timeout_in_seconds=0.5):
                if isinstance(message, ExceptionEvent):
                    if message.source.startswith((*services, "BrainBoxService")):
                        raise AssertionError(f"{message.source} failed:\n{message.traceback}")
                    self.errors.append(message)
                elif accept(message):
                    return message
            assert self.daemon is not None and self.daemon.poll() is None, (
                f"the daemon exited; its log: {self.folder / 'daemon.log'}"
            )
        raise AssertionError(f"no {what} within {timeout_s} s; other errors: {self.errors}")

    def say(self, utterance: Any, *, language: str, character: str, user: str | None = None):
        """What the assistant says for ``utterance``: a TextCommand through kaia's
        StateToUtterancesApplicationService and ParaphraseService; returns the spoken text."""
        from avatar.daemon import InternalTextCommand, TextCommand

        command = self.push(TextCommand(utterance, user, language, character))
        said = self.wait_for(
            lambda m: (
                isinstance(m, InternalTextCommand)
                and (m.envelop.publisher or "").startswith("ParaphraseService/")
                and command.envelop.id in (m.envelop.confirmation_stack or ())
            ),
            "paraphrased command",
            ("StateToUtterancesApplicationService", "ParaphraseService"),
        )
        return said.get_text(True)

    def identify_voice(self, file_id: str) -> str | None:
        """The user kaia's SpeakerIdentificationService hears in a recording in Avatar's cache."""
        from avatar.daemon import SpeakerIdentificationService
        from avatar.messaging import Confirmation

        command = self.push(SpeakerIdentificationService.Command(file_id))
        answer = self.wait_for(
            lambda m: isinstance(m, Confirmation) and m.is_confirmation_of(command),
            "speaker identification",
            ("SpeakerIdentificationService",),
        )
        assert answer.error is None, answer.error
        return answer.result

    def identify_face(self, file_id: str) -> str | None:
        """The user kaia's UserWalkInService sees in a webcam frame in Avatar's cache."""
        from avatar.daemon import UserWalkInService
        from avatar.daemon.common import ImageEvent

        event = self.push(ImageEvent(file_id))
        seen = self.wait_for(
            lambda m: (
                isinstance(m, UserWalkInService.Event) and m.envelop.reply_to == event.envelop.id
            ),
            "user walk-in event",
            ("UserWalkInService",),
        )
        return seen.user


@contextlib.contextmanager
def contract_avatar(
    folder: Path, *, brainbox_url: str, brainbox_cache: Path, character: str
) -> Iterator[ContractAvatar]:
    """The real Avatar server (resources under ``folder``, cache ``brainbox_cache``); the
    daemon starts with :meth:`ContractAvatar.start_daemon`. Both are stopped by process id."""
    folder.mkdir(parents=True, exist_ok=True)
    brainbox_cache.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = _start(
        "tests.avatar_server", str(port), str(folder), str(brainbox_cache),
        log=folder / "server.log",
    )  # fmt: skip
    avatar = ContractAvatar(
        f"http://127.0.0.1:{port}", folder, brainbox_cache, brainbox_url, character, server
    )
    try:
        _wait_for(avatar.url, server, "the Avatar server")
        yield avatar
    finally:
        avatar.stop_daemon()
        _stop(server)
