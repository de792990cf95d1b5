"""Before the first job: does this BrainBox have the deciders and models a step will use?

A production BrainBox (kaia-brainbox 5.2.0 with its Docker deciders) answers with an error only
when a job reaches a decider that is missing or a model that was never installed, which may be
hours into a run. kaia's server says which deciders it has (``GET
/controllers-service/status``) and exposes each decider's resource folder (``/resources/...``),
where its installer records the service and every model it installed:
``resources/<Decider>/installation.yaml`` (model name -> spec; written by kaia's install and
``download_model``, read by the decider's own model loading). This module reads both and names,
one line each, what is missing and how to install it.
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


# Deciders whose container keeps an installation record, and the model they load when a job
# names none (their app's default; chara's jobs name none for these).
INSTALLED_BY_RECORD = {
    "Vosk": None,
    "PiperTraining": None,
    "Ollama": None,
    "CosyVoice": "Fun-CosyVoice3-0.5B-2512",
    "InsightFace": "buffalo_l",
}


def installation_record(decider: str) -> str:
    return f"{decider}/installation.yaml"


def how_to_install_model(decider: str, model: str) -> str:
    settings = {"Vosk": "VoskSettings", "PiperTraining": "PiperTrainingSettings"}.get(
        decider, f"{decider}Settings"
    )
    how = (
        f"add it to {settings}.models_to_install on the BrainBox host and install {decider} "
        "again (kaia's install downloads the missing models and records them)"
    )
    if decider == "Ollama":
        how = f"pull it: {how}; `ollama pull` alone is not recorded"
    return how


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
    import yaml

    needs = list(needs)
    for need in list(needs):  # a decider's default model is needed whenever the decider is
        default = INSTALLED_BY_RECORD.get(need.decider)
        if need.model is None and default is not None:
            needs.append(Need(need.role, need.decider, default))
    try:
        status = client.controllers_status()
    except BrainBoxError as exc:
        return [f"BrainBox {client.url} could not say which deciders it has: {exc}"]
    deciders = {c["name"]: c for c in status.get("controllers", [])}
    problems = []
    usable = set()
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
                f"installed; install it (BrainBox UI: Controllers, {need.decider}, install)"
            )
        else:
            usable.add(need.decider)
    records: dict[str, dict | None] = {}
    for need in needs:
        if need.model is None or need.decider not in usable:
            continue
        if need.decider not in INSTALLED_BY_RECORD:
            continue
        if need.decider not in records:
            try:
                text = client.read_resource(installation_record(need.decider))
                records[need.decider] = (yaml.safe_load(text) or {}) if text is not None else None
            except (BrainBoxError, yaml.YAMLError) as exc:
                problems.append(
                    f"BrainBox {client.url}: cannot read {need.decider}'s installed models: {exc}"
                )
                records[need.decider] = {}
                continue
            if records[need.decider] is None:
                problems.append(
                    f"BrainBox {client.url}: {need.decider} (role {need.role}) was never set up "
                    f"(no resources/{installation_record(need.decider)}); install it "
                    f"(BrainBox UI: Controllers, {need.decider}, install)"
                )
        record = records[need.decider]
        if record is not None and need.model not in record:
            problems.append(
                f"BrainBox {client.url}: {need.decider} has no model {need.model!r} (role "
                f"{need.role}); {how_to_install_model(need.decider, need.model)}"
            )
    return list(dict.fromkeys(problems))
