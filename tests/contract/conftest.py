"""The contract BrainBox: kaia-brainbox 5.2.0's own server and production controllers, no Docker.

``contract_brainbox`` starts ``tests/contract/server.py`` (kaia's ``BrainBoxServer`` with the
production controllers) as its own process on a loopback port, with the Docker stand-in first on
its PATH. Each decider's container app is then started by kaia's controller code when the first job
needs it. Models are prepared as a person would install them on a real server: the Vosk models in
the decider's resource folder (a tiny model built here: its words are garbage, its timings real),
and so on; see ``ContractBrainBox.install_*``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chara_resources.embedded.launcher import free_port
from tests.dagster_dev import stop_group

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@dataclass
class ContractBrainBox:
    url: str
    folder: Path  # the server's data: brainbox.db, cache/, resources/<Decider>/
    state: Path  # the Docker stand-in's containers and logs
    process: subprocess.Popen

    def resources(self, decider: str) -> Path:
        return self.folder / "resources" / decider

    def containers(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.state.glob("containers/*.json"))]

    def container_logs(self) -> str:
        parts = []
        for c in self.containers():
            text = Path(c["log"]).read_text(errors="replace") if Path(c["log"]).is_file() else ""
            parts.append(f"--- {c['image']} ({c['name']}):\n{text[-4000:]}")
        return "\n".join(parts)

    def record_installed(self, decider: str, models: dict[str, object] | None = None) -> None:
        """What kaia's install leaves in ``resources/<decider>/installation.yaml``: the service
        is set up, and each model with its spec (serialised as kaia's installer does). A spec
        of None is taken from the decider's settings (``models_to_install``)."""
        import yaml
        from foundation_kaia.marshalling import TypeTools

        record = self.resources(decider) / "installation.yaml"
        record.parent.mkdir(parents=True, exist_ok=True)
        installed = (yaml.safe_load(record.read_text()) or {}) if record.is_file() else {}
        known = _models_to_install(decider)
        for name, spec in (models or {}).items():
            spec = known[name] if spec is None else spec
            installed[name] = TypeTools.serialize(spec, spec)
        record.write_text(yaml.safe_dump(installed))

    def install_vosk_model(self, language: str, words: list[str]) -> Path:
        """A tiny model for ``language`` where kaia's Vosk installer puts downloaded ones."""
        from tests.tiny_vosk import make_tiny_vosk_model

        folder = make_tiny_vosk_model(self.resources("Vosk") / "models" / language, words)
        self.record_installed("Vosk", {language: None})
        return folder


def _models_to_install(decider: str) -> dict[str, object]:
    import brainbox.deciders as deciders

    wanted = getattr(getattr(deciders, decider).Settings(), "models_to_install", {})

    def plain(value):  # kaia's settings use str enums; its installer records their values
        return getattr(value, "value", value)

    if isinstance(wanted, dict):
        return {str(plain(k)): plain(v) for k, v in wanted.items()}
    return {str(plain(m)) if isinstance(m, str) else m.get_name(): plain(m) for m in wanted}


def _docker_bin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    docker = folder / "docker"
    docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "docker_standin.py"}" "$@"\n')
    docker.chmod(0o755)
    return folder


def _stop_containers(state: Path) -> None:
    for path in state.glob("containers/*.json"):
        try:
            pid = json.loads(path.read_text())["pid"]
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            continue


def start_contract_brainbox(folder: Path, timeout_s: float = 60.0) -> ContractBrainBox:
    port = free_port()
    state = folder / "docker"
    env = dict(os.environ)
    env["PATH"] = f"{_docker_bin(folder / 'bin')}{os.pathsep}{env.get('PATH', '')}"
    env["CHARA_CONTRACT_DOCKER_STATE"] = str(state)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = open(folder / "server.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.contract.server", "--port", str(port), "--data", str(folder)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"contract BrainBox exited: {(folder / 'server.log').read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/heartbeat", timeout=2).status_code == 200:
                return ContractBrainBox(url, folder, state, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"contract BrainBox did not answer within {timeout_s} s")


def stop_contract_brainbox(server: ContractBrainBox) -> None:
    stop_group(server.process)
    _stop_containers(server.state)


@pytest.fixture(scope="package")
def contract_brainbox(tmp_path_factory: pytest.TempPathFactory):
    server = start_contract_brainbox(tmp_path_factory.mktemp("contract-brainbox"))
    try:
        yield server
    finally:
        stop_contract_brainbox(server)


@pytest.fixture(scope="package")
def voice_chain(contract_brainbox: ContractBrainBox, tmp_path_factory: pytest.TempPathFactory):
    """kiki|en from the sentence pool to the checkpoint report on the contract BrainBox, with one
    CPU training, shared by the chain's and the training's contract tests (voice_chain.py)."""
    import dagster as dg

    from .voice_chain import run_voice_chain

    home = tmp_path_factory.mktemp("voice-chain") / "home"
    with dg.DagsterInstance.ephemeral() as instance:
        yield run_voice_chain(contract_brainbox, home, instance)
