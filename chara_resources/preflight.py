"""Before the first job: does this BrainBox have the deciders and models a step will use?

A production BrainBox (kaia-brainbox 5.2.0 with its Docker deciders) answers with an error only
when a job reaches a decider that is missing or a model that was never installed, which may be
hours into a run. kaia's server says which deciders it has (``GET
/controllers-service/status``) and exposes each decider's resource folder (``/resources/...``),
where the models live. This module asks both and names, one line each, what is missing and how to
install it.

Where models live on kaia's server (its installers' folders, resources/<Decider>/...):
Vosk ``models/<language>``; PiperTraining ``base_models/<name>``; Ollama (its ``main`` folder is
the container's ``~/.ollama``) ``main/models/manifests/registry.ollama.ai/library/<name>/<tag>``.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .brainbox_client import BrainBoxClient, BrainBoxError


@dataclass(frozen=True)
class Need:
    """A decider (and, if ``model`` is set, one of its models) that some role will use."""

    role: str
    decider: str
    model: str | None = None


def ollama_manifest(model: str) -> str:
    name, _, tag = model.partition(":")
    if "/" not in name:
        name = f"library/{name}"
    return f"Ollama/main/models/manifests/registry.ollama.ai/{name}/{tag or 'latest'}"


def model_resource(decider: str, model: str) -> tuple[str, str] | None:
    """(kind, path under /resources) where ``decider`` keeps ``model``; None if unknown."""
    if decider == "Vosk":
        return "dir", f"Vosk/models/{model}"
    if decider == "PiperTraining":
        return "file", f"PiperTraining/base_models/{model}"
    if decider == "Ollama":
        return "file", ollama_manifest(model)
    return None


def how_to_install_model(decider: str, model: str) -> str:
    if decider == "Ollama":
        return (
            f"pull it on the BrainBox host (`docker exec <the Ollama container> ollama pull "
            f"{model}`, or add it to OllamaSettings.models_to_install and install Ollama again)"
        )
    if decider == "Vosk":
        return f"install Vosk's model {model!r} (VoskSettings.models_to_install, then install Vosk)"
    if decider == "PiperTraining":
        return f"install the base checkpoint {model!r} (PiperTrainingSettings.models_to_install)"
    return "install it on the server"


def needs_of(role: str, decider: str, parameter: str | None, jobs: Iterable[Mapping[str, Any]]):
    """What a batch of ``role`` jobs on ``decider`` needs: the decider, and the models its
    parameter or the jobs' ``model`` arguments name."""
    needs = {Need(role, decider)}
    if decider == "Ollama" and parameter:
        needs.add(Need(role, decider, parameter))
    if decider in ("Vosk", "PiperTraining"):
        for arguments in jobs:
            model = arguments.get("model")
            if isinstance(model, str) and model:
                needs.add(Need(role, decider, model))
    return sorted(needs, key=lambda n: (n.role, n.decider, n.model or ""))


def check(client: BrainBoxClient, needs: Iterable[Need]) -> list[str]:
    """One line per missing decider or model (empty: all there)."""
    needs = list(needs)
    status = client.controllers_status()
    deciders = {c["name"]: c for c in status.get("controllers", [])}
    problems = []
    for need in needs:
        if need.model is not None:
            continue
        found = deciders.get(need.decider)
        if found is None:
            known = ", ".join(sorted(deciders)) or "none"
            problems.append(
                f"BrainBox {client.url} has no decider {need.decider} (role {need.role}); "
                f"it has: {known}. Use a BrainBox with kaia's {need.decider}, or map the role "
                "to another decider (the brainbox resource's `roles`)"
            )
        elif not found.get("installed"):
            problems.append(
                f"BrainBox {client.url}: decider {need.decider} (role {need.role}) is not "
                f"installed; install it (BrainBox UI → Controllers → {need.decider} → install)"
            )
    missing_deciders = {n.decider for n in needs if n.model is None} - {
        name for name, c in deciders.items() if c.get("installed")
    }
    for need in needs:
        if need.model is None or need.decider in missing_deciders:
            continue
        where = model_resource(need.decider, need.model)
        if where is None:
            continue
        kind, path = where
        try:
            present = client.resource_exists(path, directory=kind == "dir")
        except BrainBoxError as exc:
            problems.append(
                f"BrainBox {client.url}: cannot look for {need.decider}'s models: {exc}"
            )
            continue
        if not present:
            problems.append(
                f"BrainBox {client.url}: {need.decider} has no model {need.model!r} (role "
                f"{need.role}); {how_to_install_model(need.decider, need.model)}"
            )
    return problems
