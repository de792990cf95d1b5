"""Identification chain: who speaks (voice) and who walks in (face), per modality.

avatar_media -> embedding_sets -> identity_annotations (a person, external) -> identity_dataset
(uploaded to Avatar) -> identification_report. Avatar's layout and services:
docs/kaia-5.2-servers.md (*4. Avatar*); the workflow and the choice of samples:
docs/identification.md.
"""

import base64
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg
import numpy as np
from pydantic import BaseModel, Field

from chara_resources.avatar import AvatarResource, replace_dataset
from chara_resources.brainbox import BrainBoxResource
from chara_resources.brainbox_jobs import Job
from chara_resources.folder_asset import FolderManifest
from chara_resources.paths import copy_file
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage
from chara_resources.work_cache import file_sha256

from ..characters.resource import CharacterCatalog
from .media import (
    AvatarFile,
    cache_samples,
    dataset_samples,
    get_modality,
    split_users,
)

MODALITY_NAMES = ["face", "voice"]
modality_partitions = dg.StaticPartitionsDefinition(MODALITY_NAMES)
GROUP = "identification"


class Problem(BaseModel):
    """A file or name that could not become a sample, and why."""

    name: str
    error: str


def _problems_md(problems: list[Problem], limit: int = 20) -> dg.MetadataValue:
    rows = [f"| `{p.name}` | {p.error.replace('|', '/')[:300]} |" for p in problems[:limit]]
    more = f"\n\n… and {len(problems) - limit} more" if len(problems) > limit else ""
    return dg.MetadataValue.md("| item | error |\n|---|---|\n" + "\n".join(rows) + more)


def _counts_md(counts: dict[str, int], what: str) -> dg.MetadataValue:
    rows = "\n".join(f"| {user} | {n} |" for user, n in sorted(counts.items()))
    return dg.MetadataValue.md(f"| user | {what} |\n|---|---|\n{rows}")


# -- avatar_media --------------------------------------------------------------------------


class MediaFile(BaseModel):
    """One file from Avatar: where it is on Avatar, its copy here, its label if any."""

    sha256: str
    file: str  # in this folder: cache/<name> or dataset/<user>/<name>
    avatar_name: str  # as the store names it in its section
    section: str  # cache | resources
    user: str | None = None  # the label, for files of the labelled set


class AvatarMedia(FolderManifest):
    """What Avatar collected (``cache/``) and its current labelled set (``dataset/``)."""

    modality: str
    service: str
    avatar: str  # the server or folder it came from
    users: list[str]
    files: list[MediaFile]
    problems: list[Problem]


class AvatarMediaConfig(dg.Config):
    users: list[str] = Field(
        default_factory=list,
        description="the people to tell apart; empty: one per users/*.yaml file (users "
        "already in Avatar's labelled set are added)",
    )


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if 1 < len(suffix) <= 9 and suffix[1:].isalnum() else ".bin"


@dg.asset(
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"avatar"},
    description="The recordings (voice) or webcam frames (face) Avatar collected, and its "
    "current labelled set; only files not downloaded before are fetched.",
)
def avatar_media(
    context: dg.AssetExecutionContext,
    config: AvatarMediaConfig,
    avatar: AvatarResource,
    characters: CharacterCatalog,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    modality = get_modality(context.partition_key)
    store = avatar.store(context)
    try:
        collected = cache_samples(modality, store.list("cache"))
        listed = store.list("resources", f"{modality.service}/current", recursive=True)
        labelled, file_problems = dataset_samples(modality, listed)
        configured = config.users or sorted(characters.load().users)
        users, user_problems = split_users(configured)
        users = sorted(set(users) | {f.user for f in labelled if f.user})
        problems = [Problem(name=p.name, error=p.error) for p in user_problems + file_problems]

        downloads = storage.work(context).step("downloads")
        folder = storage.staging(context)
        files: list[MediaFile] = []
        for i, item in enumerate(collected + labelled):

            def fetch(target, item: AvatarFile = item) -> dict[str, Any]:
                path = target.path(_suffix(item.name))
                store.download(item.section, item.name, path)  # type: ignore[arg-type]
                return {"sha256": file_sha256(path), "bytes": path.stat().st_size}

            record = downloads.get_or_compute(
                {"section": item.section, "name": item.name},
                fetch,
                label=item.base_name,
                record_errors=True,
            )
            if not record.ok:
                problems.append(Problem(name=item.name, error=record.error or "download failed"))
                continue
            local = f"dataset/{item.user}/{item.base_name}" if item.user else f"cache/{item.name}"
            copy_file(next(iter(record.files.values())), folder / local)
            files.append(
                MediaFile(
                    sha256=record.result["sha256"],
                    file=local,
                    avatar_name=item.name,
                    section=item.section,
                    user=item.user,
                )
            )
            if (i + 1) % 200 == 0:
                context.log.info(f"{i + 1} of {len(collected) + len(labelled)} files checked")
    finally:
        store.close()
    context.log.info(
        f"{modality.name}: {len(files)} files ({downloads.computed} new, {downloads.reused} "
        f"downloaded before), {len(problems)} problems"
    )
    result = AvatarMedia(
        modality=modality.name,
        service=modality.service,
        avatar=store.location,
        users=users,
        files=files,
        problems=problems,
    ).bind(folder)
    per_user = Counter(f.user for f in files if f.user)
    metadata: dict[str, Any] = {
        "collected": len(collected),
        "labelled": len(labelled),
        "new_downloads": downloads.computed,
        "known_downloads": downloads.reused,
        "users": ", ".join(users),
        "labelled_per_user": _counts_md({u: per_user.get(u, 0) for u in users}, "samples"),
        "problems": len(problems),
        "avatar": store.location,
    }
    if problems:
        metadata["problem_list"] = _problems_md(problems)
    return dg.MaterializeResult(value=result, metadata=metadata)


# -- embedding_sets ------------------------------------------------------------------------


class EmbeddedSample(BaseModel):
    """One distinct sample (by content): its file here, its row in ``vectors.npy``."""

    id: str  # the content hash (first 16 hex digits)
    file: str
    names: list[str]  # where Avatar has it
    user: str | None = None  # its label in Avatar's labelled set
    row: int


class EmbeddingSet(FolderManifest):
    """A vector per sample (``vectors.npy``, float32, one row each) and what failed."""

    modality: str
    service: str
    media_kind: str  # audio or image: how the annotation service shows a sample
    users: list[str]
    samples: list[EmbeddedSample]
    problems: list[Problem]
    decider: str
    dim: int
    vectors: str = "vectors.npy"

    def matrix(self) -> np.ndarray:
        return np.load(self.path(self.vectors))


def _vector_of(modality: str, result: Any) -> list[float]:
    """The embedding in a job's result; a face image must show exactly one face."""
    if modality == "face":
        faces = result if isinstance(result, list) else []
        if len(faces) != 1:
            raise ValueError(
                f"{len(faces)} faces found in the image; a sample must show exactly one face"
            )
        result = faces[0].get("embedding") if isinstance(faces[0], dict) else None
    vector = np.asarray(result, dtype=np.float64) if isinstance(result, list) else None
    if vector is None or vector.ndim != 1 or len(vector) == 0 or not np.all(np.isfinite(vector)):
        raise ValueError(f"the embedder returned no usable vector ({str(result)[:80]})")
    return [float(v) for v in vector]


@dg.asset(
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"numpy"},
    pool=brainbox_pool(),
    description="A vector per distinct sample, from the BrainBox speaker_embedder "
    "(Resemblyzer) or face_embedder (InsightFace: exactly one face per image), cached per "
    "file; unreadable files and images without exactly one face are listed with the reason.",
)
def embedding_sets(
    context: dg.AssetExecutionContext,
    avatar_media: AvatarMedia,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    modality = get_modality(avatar_media.modality)
    problems = list(avatar_media.problems)
    by_content: dict[str, list[MediaFile]] = {}
    for f in avatar_media.files:
        by_content.setdefault(f.sha256, []).append(f)
    call = brainbox.call(modality.role, modality.method)
    folder = storage.staging(context)
    groups = sorted(by_content.items())
    names: dict[str, str] = {}  # sha -> BrainBox cache name
    with brainbox.client(context) as client:
        for sha, copies in groups:
            names[sha] = f"ident-{sha[:32]}{_suffix(copies[0].file)}"
            if not client.is_file(names[sha]):
                client.upload(names[sha], avatar_media.path(copies[0].file))
    argument = "file" if modality.name == "voice" else "image"
    outcome = brainbox.run(
        context,
        storage.work(context).step("embedded", {"decider": call.decider, "model": call.parameter}),
        modality.role,
        modality.method,
        [Job({argument: names[sha]}, inputs={"content": sha}, label=sha[:16]) for sha, _ in groups],
    )
    samples: list[EmbeddedSample] = []
    rows: list[list[float]] = []
    for (sha, copies), record in zip(groups, outcome.records(), strict=True):
        where = ", ".join(c.avatar_name for c in copies)
        try:
            if not record.ok:
                raise ValueError(record.error)
            vector = _vector_of(modality.name, record.result)
        except ValueError as exc:
            problems.append(Problem(name=where, error=str(exc)))
            continue
        if rows and len(vector) != len(rows[0]):
            problems.append(Problem(name=where, error=f"vector of length {len(vector)}"))
            continue
        users = sorted({c.user for c in copies if c.user})
        if len(users) > 1:
            context.log.warning(f"{where}: labelled as {users} in Avatar; taken as unlabelled")
        first = sorted(copies, key=lambda c: c.user is None)[0]
        local = f"samples/{sha[:16]}{_suffix(first.file)}"
        copy_file(avatar_media.path(first.file), folder / local)
        samples.append(
            EmbeddedSample(
                id=sha[:16],
                file=local,
                names=[c.avatar_name for c in copies],
                user=users[0] if len(users) == 1 else None,
                row=len(rows),
            )
        )
        rows.append(vector)
    if groups and not samples:
        raise dg.Failure(
            f"no {modality.name} sample could be embedded ({len(groups)} tried). First "
            "errors: " + " | ".join(p.error for p in problems[-3:])
        )
    dim = len(rows[0]) if rows else 0
    np.save(folder / "vectors.npy", np.asarray(rows, dtype=np.float32).reshape(len(rows), dim))
    result = EmbeddingSet(
        modality=modality.name,
        service=modality.service,
        media_kind=modality.kind,
        users=avatar_media.users,
        samples=samples,
        problems=problems,
        decider=call.decider,
        dim=dim,
    ).bind(folder)
    labelled = Counter(s.user for s in samples if s.user)
    metadata: dict[str, Any] = {
        "samples": len(samples),
        "labelled": sum(labelled.values()),
        "unlabelled": len(samples) - sum(labelled.values()),
        "problems": len(problems),
        "computed": outcome.submitted,
        "reused": outcome.reused,
        "dim": dim,
        "decider": call.decider,
    }
    if problems:
        metadata["problem_list"] = _problems_md(problems)
    return dg.MaterializeResult(value=result, metadata=metadata)


identity_annotations = dg.AssetSpec(
    "identity_annotations",
    deps=[embedding_sets],
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"human"},
    description="A person's labels (who speaks, who is in the picture), given in the "
    "annotation service (`chara identify MODALITY`); reported here when they press FINISH.",
)


# -- identity_dataset ----------------------------------------------------------------------


class DatasetEntry(BaseModel):
    id: str
    user: str
    avatar_file: str  # <user>/<name> under resources/<service>/current/
    file: str  # the sample here
    row: int  # in vectors.npy


class IdentityDataset(FolderManifest):
    """The labelled set as uploaded to Avatar, with its vectors (``vectors.npy``)."""

    modality: str
    service: str
    avatar: str
    stash: str  # where the previous dataset was copied on Avatar
    entries: list[DatasetEntry]
    left_out: dict[str, int]
    problems: list[Problem]
    vectors: str = "vectors.npy"

    def matrix(self) -> np.ndarray:
        return np.load(self.path(self.vectors))


def _dataset_name(user: str, sample: EmbeddedSample, taken: set[str]) -> str:
    """``<user>/<name>`` on Avatar: the sample's Avatar file name, unique in the whole set.

    Unique across users, not only within one: Avatar's identificator copies each sample into
    its cache under the bare file name and embeds it from there (kaia-avatar 5.2), so
    ``alice/1.wav`` and ``bob/1.wav`` would both get the vector of whichever came first.
    ``taken`` holds the bare names used so far.
    """
    base = PurePosixPath(sample.names[0]).name
    if base in taken:
        stem = PurePosixPath(base)
        base = f"{stem.stem}-{sample.id}{stem.suffix}"
    taken.add(base)
    return f"{user}/{base}"


@dg.asset(
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"avatar"},
    deps=[identity_annotations],
    description="The labelled set uploaded to Avatar's resources/<service>/current/<user>/; "
    "the previous one is first copied to before_<timestamp>/. Skipped, deleted and failed "
    "samples are left out.",
)
def identity_dataset(
    context: dg.AssetExecutionContext,
    embedding_sets: EmbeddingSet,
    avatar: AvatarResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    from ..annotation.log import AnnotationLog, default_log_path
    from .labelling import final_labels, identification_folder

    modality = get_modality(embedding_sets.modality)
    task_path = identification_folder(storage.root_path, modality.name) / "task.json"
    if not task_path.exists():
        raise dg.Failure(
            f"nobody has labelled {modality.name} samples yet: run `chara identify "
            f"{modality.name}`, label, press FINISH, then materialize identity_dataset again"
        )
    decisions = AnnotationLog(default_log_path(task_path)).decisions()
    outcomes = final_labels(
        [(s.id, s.user) for s in embedding_sets.samples], decisions, embedding_sets.users
    )
    vectors = embedding_sets.matrix()
    folder = storage.staging(context)
    problems = list(embedding_sets.problems)
    left_out: Counter[str] = Counter()
    entries: list[DatasetEntry] = []
    uploads: dict[str, Path] = {}
    bare_names: set[str] = set()
    rows: list[int] = []
    for sample, outcome in zip(embedding_sets.samples, outcomes, strict=True):
        if outcome.error:
            problems.append(Problem(name=", ".join(sample.names), error=outcome.error))
            continue
        if outcome.user is None:
            left_out[outcome.left_out or "not labelled"] += 1
            continue
        name = _dataset_name(outcome.user, sample, bare_names)
        local = f"current/{name}"
        copy_file(embedding_sets.path(sample.file), folder / local)
        uploads[name] = folder / local
        entries.append(
            DatasetEntry(
                id=sample.id, user=outcome.user, avatar_file=name, file=local, row=len(rows)
            )
        )
        rows.append(sample.row)
    if not entries:
        raise dg.Failure(
            f"no {modality.name} sample has a label ({dict(left_out)} left out, "
            f"{len(problems)} problems): nothing to upload"
        )
    np.save(folder / "vectors.npy", vectors[rows].astype(np.float32))
    store = avatar.store(context)
    try:
        stash = replace_dataset(store, modality.service, uploads)
    finally:
        store.close()
    context.log.info(
        f"uploaded {len(entries)} {modality.name} samples to {store.location}; the previous "
        f"dataset is in resources/{stash}"
    )
    result = IdentityDataset(
        modality=modality.name,
        service=modality.service,
        avatar=store.location,
        stash=stash,
        entries=entries,
        left_out=dict(left_out),
        problems=problems,
    ).bind(folder)
    per_user = Counter(e.user for e in entries)
    metadata: dict[str, Any] = {
        "uploaded": len(entries),
        "per_user": _counts_md(dict(per_user), "samples"),
        "left_out": dg.MetadataValue.json(dict(left_out)),
        "previous_dataset": f"resources/{stash}",
        "problems": len(problems),
    }
    if problems:
        metadata["problem_list"] = _problems_md(problems)
    return dg.MaterializeResult(value=result, metadata=metadata)


# -- identification_report -----------------------------------------------------------------


class IdentificationReport(FolderManifest):
    modality: str
    samples: int
    accuracy: float  # leave-one-out, 10-NN cosine vote
    per_user: dict[str, int]
    confusion: dict[str, dict[str, int]]
    plot: str = "projection.png"


def _confusion_md(table: dict[str, dict[str, int]]) -> str:
    columns = list(next(iter(table.values())).keys()) if table else []
    head = "| true \\ identified | " + " | ".join(columns) + " |\n"
    head += "|---" * (len(columns) + 1) + "|\n"
    return head + "\n".join(
        f"| {t} | " + " | ".join(str(row[c]) for c in columns) + " |" for t, row in table.items()
    )


@dg.asset(
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"python"},
    description="How well the uploaded set identifies its own people: leave-one-out accuracy "
    "of the 10-nearest-neighbour cosine vote (what Avatar does), the confusion matrix, "
    "samples per user and a 2-D projection of the embeddings.",
)
def identification_report(
    context: dg.AssetExecutionContext, identity_dataset: IdentityDataset, storage: CharaStorage
) -> dg.MaterializeResult:
    from .active import confusion, leave_one_out
    from .plots import projection_plot

    vectors = identity_dataset.matrix()
    truth = [e.user for e in identity_dataset.entries]
    users = sorted(set(truth))
    guess = leave_one_out(vectors, truth)
    accuracy = float(np.mean([g == t for g, t in zip(guess, truth, strict=True)]))
    table = confusion(truth, guess, users)
    folder = storage.staging(context)
    result = IdentificationReport(
        modality=identity_dataset.modality,
        samples=len(truth),
        accuracy=round(accuracy, 4),
        per_user=dict(Counter(truth)),
        confusion=table,
    ).bind(folder)
    projection_plot(
        vectors,
        truth,
        result.path(result.plot),
        title=f"{identity_dataset.modality} embeddings (PCA), LOO accuracy {accuracy:.1%}",
    )
    png = base64.b64encode(result.path(result.plot).read_bytes()).decode()
    context.log.info(f"leave-one-out accuracy {accuracy:.3f} over {len(truth)} samples")
    return dg.MaterializeResult(
        value=result,
        metadata={
            "accuracy": dg.MetadataValue.float(round(accuracy, 4)),
            "samples": len(truth),
            "per_user": _counts_md(dict(Counter(truth)), "samples"),
            "confusion": dg.MetadataValue.md(_confusion_md(table)),
            "projection": dg.MetadataValue.md(f"![projection](data:image/png;base64,{png})"),
        },
    )


ASSETS = [
    avatar_media,
    embedding_sets,
    identity_annotations,
    identity_dataset,
    identification_report,
]


def write_task_for(
    embedding_set: EmbeddingSet,
    home: Path,
    *,
    refine: bool = False,
    dagster_url: str | None = None,
) -> Path:
    """The annotation task of an embedding set (see :mod:`.labelling`); returns its path."""
    from .labelling import TaskSample, identification_folder, write_identification_task

    vectors = embedding_set.matrix()
    samples = [
        TaskSample(
            id=s.id,
            path=embedding_set.path(s.file).resolve(),
            vector=vectors[s.row],
            prior_label=s.user,
            names=s.names,
        )
        for s in embedding_set.samples
    ]
    return write_identification_task(
        identification_folder(home, embedding_set.modality),
        embedding_set.modality,
        embedding_set.media_kind,
        embedding_set.users,
        samples,
        refine=refine,
        dagster_url=dagster_url,
    )
