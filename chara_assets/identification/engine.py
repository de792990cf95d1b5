"""The identification chain's work, without Dagster: what each asset stores and how it is
made (:func:`collect_media`, :func:`embed_media`, :func:`labelled_set`); ``assets.py`` reads
the inputs, calls these and reports. Avatar: docs/kaia-5.2-servers.md (*4. Avatar*); the
workflow: docs/identification.md.
"""

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from chara_resources.brainbox_jobs import BatchOutcome, Job
from chara_resources.folder_asset import FolderManifest
from chara_resources.models import Models
from chara_resources.paths import copy_file
from chara_resources.work_cache import WorkCache, WorkStep, file_sha256

from .media import (
    AvatarFile,
    IdentificationError,
    Problem,
    cache_samples,
    dataset_samples,
    get_modality,
    split_users,
)
from .planning import final_labels

if TYPE_CHECKING:
    from chara_resources.avatar import AvatarStore


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


class EmbeddedSample(BaseModel):
    """One distinct sample (by content): its file here, its row in ``vectors.npy``."""

    id: str  # the content hash (first 16 hex digits)
    file: str
    names: list[str]  # where Avatar has it
    user: str | None = None  # its label in Avatar's labelled set
    row: int


class _WithVectors(FolderManifest):
    vectors: str = "vectors.npy"  # float32, one row per sample

    def matrix(self) -> np.ndarray:
        return np.load(self.path(self.vectors))


class EmbeddingSet(_WithVectors):
    """A vector per sample and what failed."""

    modality: str
    service: str
    media_kind: str  # audio or image: how the annotation service shows a sample
    users: list[str]
    samples: list[EmbeddedSample]
    problems: list[Problem]
    decider: str
    dim: int


class DatasetEntry(BaseModel):
    id: str
    user: str
    avatar_file: str  # <user>/<name> under resources/<service>/current/
    file: str  # the sample here
    row: int  # in vectors.npy


class IdentityDataset(_WithVectors):
    """The labelled set as uploaded to Avatar, with its vectors."""

    modality: str
    service: str
    avatar: str
    stash: str  # where the previous dataset was copied on Avatar
    entries: list[DatasetEntry]
    left_out: dict[str, int]
    problems: list[Problem]


def _suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if 1 < len(suffix) <= 9 and suffix[1:].isalnum() else ".bin"


def collect_media(
    store: "AvatarStore",
    modality_name: str,
    users: list[str],
    downloads: WorkStep,
    folder: Path,
    log: Callable[[str], None],
) -> tuple[AvatarMedia, int, int]:
    """Copy the modality's media and labelled set from ``store`` into ``folder``. Output: the
    media (bound to ``folder``) and how many files Avatar's cache and labelled set list.

    Each file is downloaded once (``downloads`` keeps it by section and Avatar name); a file
    that cannot be downloaded, a user name that cannot be a label and a labelled file in the
    wrong place become problems. ``users``: the configured people (users found in the
    labelled set are added)."""
    modality = get_modality(modality_name)
    collected = cache_samples(modality, store.list("cache"))
    listed = store.list("resources", f"{modality.service}/current", recursive=True)
    labelled, file_problems = dataset_samples(modality, listed)
    good_users, user_problems = split_users(users)
    everyone = sorted(set(good_users) | {f.user for f in labelled if f.user})
    problems = user_problems + file_problems
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
        sha = record.result["sha256"]
        where = {"section": item.section, "user": item.user}
        files.append(MediaFile(sha256=sha, file=local, avatar_name=item.name, **where))
        if (i + 1) % 200 == 0:
            log(f"{i + 1} of {len(collected) + len(labelled)} files checked")
    media = AvatarMedia(
        modality=modality.name,
        service=modality.service,
        avatar=store.location,
        users=everyone,
        files=files,
        problems=problems,
    )
    return media.bind(folder), len(collected), len(labelled)


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


def embed_media(
    models: Models,
    work: WorkCache,
    media: AvatarMedia,
    folder: Path,
    warn: Callable[[str], None],
) -> tuple[EmbeddingSet, BatchOutcome]:
    """A vector per distinct file content of ``media``: the set (bound to ``folder``, which
    gets each sample's file and ``vectors.npy``) and the batch's outcome (submitted, reused).

    Each content is put to the models once (``ident-<sha>``) and embedded once: the results
    are kept in ``work``'s ``embedded`` step, keyed by content and the model that made them.
    A failed job, a vector of another length or an image without exactly one face becomes a
    problem. Errors: :class:`IdentificationError` when files were given and none could be
    embedded."""
    modality = get_modality(media.modality)
    problems = list(media.problems)
    by_content: dict[str, list[MediaFile]] = {}
    for f in media.files:
        by_content.setdefault(f.sha256, []).append(f)
    groups = sorted(by_content.items())
    names = {sha: f"ident-{sha[:32]}{_suffix(copies[0].file)}" for sha, copies in groups}
    for sha, copies in groups:
        models.put_file(names[sha], media.path(copies[0].file))
    # The step's parameters as they have always been: stored vectors stay valid.
    decider, _, parameter = models.model(modality.role, modality.method).partition(":")
    step = work.step("embedded", {"decider": decider, "model": parameter or None})
    argument = "file" if modality.name == "voice" else "image"
    jobs = [
        Job({argument: names[sha]}, inputs={"content": sha}, label=sha[:16]) for sha, _ in groups
    ]
    outcome = models.run(step, modality.role, modality.method, jobs)
    vectors: dict[str, list[float]] = {}
    for (sha, copies), record in zip(groups, outcome.records(), strict=True):
        try:
            if not record.ok:
                raise ValueError(record.error)
            vectors[sha] = _vector_of(modality.name, record.result)
        except ValueError as exc:
            problems.append(Problem(name=", ".join(c.avatar_name for c in copies), error=str(exc)))
    # The most common length is the embedder's (one odd vector must not reject the others).
    lengths = Counter(len(v) for v in vectors.values())
    dim = max(lengths, key=lambda n: (lengths[n], -n)) if lengths else 0
    samples: list[EmbeddedSample] = []
    rows: list[list[float]] = []
    for sha, copies in groups:
        where = ", ".join(c.avatar_name for c in copies)
        if sha not in vectors:
            continue
        if len(vectors[sha]) != dim:
            problems.append(Problem(name=where, error=f"vector of length {len(vectors[sha])}"))
            continue
        users = sorted({c.user for c in copies if c.user})
        if len(users) > 1:
            warn(f"{where}: labelled as {users} in Avatar; taken as unlabelled")
        first = sorted(copies, key=lambda c: c.user is None)[0]
        local = f"samples/{sha[:16]}{_suffix(first.file)}"
        copy_file(media.path(first.file), folder / local)
        user = users[0] if len(users) == 1 else None
        names_there = [c.avatar_name for c in copies]
        samples.append(
            EmbeddedSample(id=sha[:16], file=local, names=names_there, user=user, row=len(rows))
        )
        rows.append(vectors[sha])
    if groups and not samples:
        raise IdentificationError(
            f"no {modality.name} sample could be embedded ({len(groups)} tried). First "
            "errors: " + " | ".join(p.error for p in problems[-3:])
        )
    np.save(folder / "vectors.npy", np.asarray(rows, dtype=np.float32).reshape(len(rows), dim))
    embedding_set = EmbeddingSet(
        modality=modality.name,
        service=modality.service,
        media_kind=modality.kind,
        users=media.users,
        samples=samples,
        problems=problems,
        decider=decider,
        dim=dim,
    )
    return embedding_set.bind(folder), outcome


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


def labelled_set(
    embedding_set: EmbeddingSet, decisions: Mapping[str, str], folder: Path
) -> tuple[IdentityDataset, dict[str, Path]]:
    """The dataset a person's ``decisions`` (sample id -> label, see
    :func:`.planning.final_labels`) make of ``embedding_set``, bound to ``folder`` (its
    ``avatar`` and ``stash`` still empty), and the files to upload (``<user>/<name>`` -> the
    copy in ``folder/current/``).

    Errors: :class:`IdentificationError` when no sample has a label."""
    samples = embedding_set.samples
    outcomes = final_labels([(s.id, s.user) for s in samples], decisions, embedding_set.users)
    problems = list(embedding_set.problems)
    left_out: Counter[str] = Counter()
    entries: list[DatasetEntry] = []
    uploads: dict[str, Path] = {}
    bare_names: set[str] = set()
    rows: list[int] = []
    for sample, outcome in zip(samples, outcomes, strict=True):
        if outcome.error:
            problems.append(Problem(name=", ".join(sample.names), error=outcome.error))
            continue
        if outcome.user is None:
            left_out[outcome.left_out or "not labelled"] += 1
            continue
        name = _dataset_name(outcome.user, sample, bare_names)
        local = f"current/{name}"
        copy_file(embedding_set.path(sample.file), folder / local)
        uploads[name] = folder / local
        entry = DatasetEntry(
            id=sample.id, user=outcome.user, avatar_file=name, file=local, row=len(rows)
        )
        entries.append(entry)
        rows.append(sample.row)
    if not entries:
        raise IdentificationError(
            f"no {embedding_set.modality} sample has a label ({dict(left_out)} left out, "
            f"{len(problems)} problems): nothing to upload"
        )
    np.save(folder / "vectors.npy", embedding_set.matrix()[rows].astype(np.float32))
    dataset = IdentityDataset(
        modality=embedding_set.modality,
        service=embedding_set.service,
        avatar="",
        stash="",
        entries=entries,
        left_out=dict(left_out),
        problems=problems,
    )
    return dataset.bind(folder), uploads
