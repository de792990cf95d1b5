"""BrainBox as a Dagster resource: roles mapped to deciders, batches through the work cache.

Pipelines ask for a *role* (``cloner``, ``recognizer``...), never a decider: configuration maps
each role to a decider, its model parameter and, where they differ, its method names. With no
URL configured, chara starts the embedded BrainBox on this machine.
"""

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from .brainbox_client import BrainBoxClient, BrainBoxError
from .brainbox_jobs import BatchOutcome, Call, Job, run_jobs, run_long_job
from .decider_shapes import shape_of
from .embedded.launcher import EmbeddedBrainBox
from .paths import check_slug
from .pools import guard_run_pools
from .preflight import Need, needs_of
from .preflight import check as check_needs
from .settings import chara_home
from .work_cache import ItemRecord, WorkStep

ROLES = (
    "cloner",
    "recognizer",
    "llm",
    "speaker_embedder",
    "face_embedder",
    "piper_trainer",
    "piper_voice",
)


class RoleBinding(dg.Config):
    """The decider that plays a role, with the production deciders' method names."""

    decider: str
    parameter: str | None = Field(default=None, description="model inside the decider")
    methods: dict[str, str] = Field(
        default_factory=dict, description="production method name -> this decider's method"
    )


# A GPU BrainBox with the production deciders.
PRODUCTION_ROLES: dict[str, RoleBinding] = {
    "cloner": RoleBinding(decider="CosyVoice"),
    "recognizer": RoleBinding(decider="Vosk"),
    "llm": RoleBinding(decider="Ollama", parameter="llama3.1:8b"),
    "speaker_embedder": RoleBinding(decider="Resemblyzer"),
    "face_embedder": RoleBinding(decider="InsightFace"),
    "piper_trainer": RoleBinding(decider="PiperTraining"),
    "piper_voice": RoleBinding(decider="Piper"),
}

# The embedded BrainBox (chara_resources/embedded/deciders.py).
EMBEDDED_ROLES: dict[str, RoleBinding] = {
    "cloner": RoleBinding(decider="StandInVoice"),  # NOT cloning: see the decider
    "recognizer": RoleBinding(decider="EmbeddedRecognizer"),
    "llm": RoleBinding(decider="LlamaCpp", parameter="smollm2-135m-instruct"),
    "speaker_embedder": RoleBinding(decider="Resemblyzer"),
    "face_embedder": RoleBinding(decider="NoFaceModel"),
    "piper_trainer": RoleBinding(decider="PiperTrainer"),  # CPU: small trainings only
    "piper_voice": RoleBinding(decider="PiperVoice"),
}


class UnknownRole(ValueError):
    pass


# (server URL, needs) already found present by this process: each step checks once.
_CHECKED: set[tuple[str, tuple[Need, ...]]] = set()

# Run tag naming the BrainBox (of several in ``url``) that a run's jobs go to.
ROUTE_TAG = "chara/brainbox"


def parse_servers(url: str) -> dict[str, str]:
    """``url`` as named servers: one URL (named "default") or ``name=url,name=url``."""
    entries = [e.strip() for e in url.split(",") if e.strip()]
    if len(entries) == 1 and not _is_named(entries[0]):
        return {"default": entries[0]}
    servers: dict[str, str] = {}
    for entry in entries:
        name, _, address = entry.partition("=")
        if not _is_named(entry) or not address.strip():
            raise ValueError(
                f"BrainBox url entry {entry!r}: with several servers, name each one, "
                "e.g. 'gpu1=http://10.0.0.5:8090,gpu2=http://10.0.0.6:8090'"
            )
        servers[check_slug(name.strip(), "BrainBox server name")] = address.strip()
    return servers


def _is_named(entry: str) -> bool:
    return "=" in entry and not entry.startswith(("http://", "https://"))


class BrainBoxResource(dg.ConfigurableResource):
    """A BrainBox server: ``url`` (``CHARA_BRAINBOX_URL``) or, when empty, the embedded one."""

    url: str = Field(
        default="",
        description="BrainBox URL, or several as 'name=url,name=url' (each run goes to the one "
        "its chara/brainbox tag names, else to one chosen by its partition key); empty: the "
        "embedded BrainBox",
    )
    role_profile: str = Field(
        default="",
        description="which deciders the server has: production (a GPU BrainBox) or embedded "
        "(chara's CPU deciders); default: embedded without a URL, production with one",
    )
    roles: dict[str, RoleBinding] = Field(
        default_factory=dict, description="overrides of the profile's role -> decider mapping"
    )
    retry_for_s: float = Field(
        default=120.0, description="how long to keep retrying an unreachable server"
    )
    poll_max_s: float = Field(default=5.0, description="longest wait between progress polls")
    batch_timeout_s: float = Field(
        default=12 * 3600, description="a batch still running after this is cancelled"
    )
    log_every_s: float = Field(default=30.0, description="progress line interval in the log")
    embedded_folder: str = Field(
        default="", description="data of the embedded BrainBox; default $CHARA_HOME/brainbox"
    )

    @property
    def is_embedded(self) -> bool:
        return not self.url

    @property
    def profile(self) -> str:
        return self.role_profile or ("embedded" if self.is_embedded else "production")

    def bindings(self) -> dict[str, RoleBinding]:
        profile = self.profile
        if profile not in ("production", "embedded"):
            raise ValueError(
                f"BrainBox role_profile {profile!r} must be 'production' or 'embedded'"
            )
        defaults = EMBEDDED_ROLES if profile == "embedded" else PRODUCTION_ROLES
        return {**defaults, **self.roles}

    def call(self, role: str, method: str) -> Call:
        """The decider call that plays ``role``'s ``method`` (a production method name)."""
        if role not in ROLES:
            raise UnknownRole(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        binding = self.bindings().get(role)
        if binding is None:
            raise UnknownRole(
                f"role {role!r} has no decider on the embedded BrainBox; configure a BrainBox "
                "that has one (CHARA_BRAINBOX_URL) or map the role in the resource's `roles`"
            )
        if method in binding.methods:  # mapped by hand: the decider takes chara's shapes
            return Call(binding.decider, binding.methods[method], binding.parameter)
        shape = shape_of(binding.decider, method)
        return Call(
            binding.decider,
            shape.method,
            binding.parameter,
            encode=shape.arguments,
            decode=shape.result,
        )

    def choose_server(self, context: dg.OpExecutionContext | None = None) -> tuple[str, str]:
        """(name, URL) of the server for this run: the one its ``chara/brainbox`` tag names,
        else one chosen by a stable hash of the partition key, so that a partition's re-run
        goes back to the server that holds its submitted jobs."""
        servers = parse_servers(self.url)
        if len(servers) == 1:
            return next(iter(servers.items()))
        tags = context.run.tags if context is not None else {}
        name = tags.get(ROUTE_TAG)
        if name is not None:
            if name not in servers:
                raise ValueError(
                    f"run tag {ROUTE_TAG}={name!r} names no configured BrainBox; "
                    f"configured: {', '.join(sorted(servers))}"
                )
            return name, servers[name]
        key = ""
        if context is not None:
            key = str(context.partition_key) if context.has_partition_key else context.run.run_id
        names = sorted(servers)
        index = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(names)
        return names[index], servers[names[index]]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        guard_run_pools(context)  # a killed run's pool slot must not block this run

    def _embedded(self) -> EmbeddedBrainBox:
        folder = Path(self.embedded_folder) if self.embedded_folder else chara_home() / "brainbox"
        return EmbeddedBrainBox(folder)

    def server_url(self, context: dg.OpExecutionContext | None = None) -> str:
        if self.url:
            return self.choose_server(context)[1]
        warn = context.log.warning if context is not None else None
        return self._embedded().ensure_running(log=warn)

    @contextmanager
    def client(self, context: dg.OpExecutionContext | None = None) -> Iterator[BrainBoxClient]:
        warn = context.log.warning if context is not None else None
        url = self.server_url(context)
        if context is not None and len(parse_servers(self.url or "x")) > 1:
            context.log.info(f"BrainBox {self.choose_server(context)[0]} at {url}")
        # The embedded server may be restarted on another port while a batch waits
        # (`chara brainbox stop` / `start`): the client looks it up again in server.json.
        locate = None if self.url else self._embedded().recorded_url
        with BrainBoxClient(
            url, retry_for_s=self.retry_for_s, on_retry=warn, locate=locate
        ) as client:
            yield client

    def needs(self, roles: Sequence[str], languages: Sequence[str]) -> list[Need]:
        """The deciders and models that ``roles`` need for ``languages`` on this profile."""
        from .decider_shapes import role_models

        found: list[Need] = []
        for role in roles:
            call = self.call(role, "")
            jobs = [{"model": m} for m in role_models(call.decider, role, languages)]
            found += needs_of(role, call.decider, call.parameter, jobs)
        return sorted(set(found), key=lambda n: (n.role, n.decider, n.model or ""))

    def preflight(self, client: BrainBoxClient, needs: Sequence[Need]) -> list[str]:
        """What of ``needs`` the server lacks, one line each (nothing to check on a server with
        chara's embedded deciders: chara starts them itself, they need no installation)."""
        if self.profile != "production":
            return []
        return check_needs(client, needs)

    def _preflight_once(self, context, client: BrainBoxClient, call: Call, role, jobs) -> None:
        if self.profile != "production":
            return
        needs = tuple(needs_of(role, call.decider, call.parameter, [j.arguments for j in jobs]))
        key = (client.url, needs)
        if key in _CHECKED:
            return
        problems = self.preflight(client, needs)
        if problems:
            raise dg.Failure("BrainBox cannot run this step:\n" + "\n".join(problems))
        _CHECKED.add(key)
        if context is not None:
            context.log.info(f"BrainBox {client.url} has {call.decider} and its models")

    def run(
        self,
        context: dg.OpExecutionContext,
        step: WorkStep,
        role: str,
        method: str,
        jobs: Sequence[Job],
        *,
        result_file: str | None = None,
        timeout_s: float | None = None,
    ) -> BatchOutcome:
        """Run a batch of ``role.method`` jobs; results land in ``step`` item by item."""
        call = self.call(role, method)
        with self.client(context) as client:
            self._preflight_once(context, client, call, role, jobs)
            return run_jobs(
                client,
                step,
                call,
                jobs,
                result_file=result_file,
                timeout_s=timeout_s or self.batch_timeout_s,
                poll_max_s=self.poll_max_s,
                log=context.log.info,
                log_every_s=self.log_every_s,
                what=f"{role} ({call.decider}.{call.method})",
            )

    def run_long(
        self,
        context: dg.OpExecutionContext,
        step: WorkStep,
        role: str,
        method: str,
        job: Job,
        *,
        poll_s: float = 10.0,
    ) -> ItemRecord:
        """Run one long job (training), forwarding progress and log lines; re-attaches."""
        call = self.call(role, method)
        with self.client(context) as client:
            self._preflight_once(context, client, call, role, [job])
            return run_long_job(client, step, call, job, poll_s=poll_s, log=context.log.info)

    def models(self, context: dg.OpExecutionContext) -> "BrainBoxModels":
        """This BrainBox as the engines' ``Models`` (chara_resources/models.py), for one run."""
        return BrainBoxModels(self, context)


@dataclass(frozen=True)
class BrainBoxModels:
    """``Models`` on a BrainBox, for one run: progress goes to the run's log."""

    brainbox: BrainBoxResource
    context: dg.OpExecutionContext

    def run(
        self,
        step: WorkStep,
        role: str,
        method: str,
        jobs: Sequence[Job],
        *,
        result_file: str | None = None,
        timeout_s: float | None = None,
    ) -> BatchOutcome:
        return self.brainbox.run(
            self.context, step, role, method, jobs, result_file=result_file, timeout_s=timeout_s
        )

    def run_long(
        self, step: WorkStep, role: str, method: str, job: Job, *, poll_s: float = 10.0
    ) -> ItemRecord:
        return self.brainbox.run_long(self.context, step, role, method, job, poll_s=poll_s)

    def put_file(self, name: str, path: Path) -> str:
        with self.brainbox.client(self.context) as client:
            if not client.is_file(name):
                client.upload(name, path)
        return name

    def get_file(self, name: str, path: Path) -> Path:
        with self.brainbox.client(self.context) as client:
            return client.download(name, path)

    def delete_file(self, name: str) -> None:
        with self.brainbox.client(self.context) as client, contextlib.suppress(BrainBoxError):
            client.delete(name)

    def model(self, role: str, method: str) -> str:
        call = self.brainbox.call(role, method)
        return f"{call.decider}:{call.parameter}" if call.parameter else call.decider

    def log(self, message: str) -> None:
        self.context.log.info(message)
