"""Identification chain: who speaks (voice) and who walks in (face), per modality.

avatar_media -> embedding_sets -> identity_annotations (a person, external) -> identity_dataset
(uploaded to Avatar) -> identification_report. The work is in :mod:`.engine` and
:mod:`.planning`; these assets read their inputs, call them and report. Avatar's layout and
services: docs/kaia-5.2-servers.md (*4. Avatar*); the workflow and the choice of samples:
docs/identification.md.
"""

from collections import Counter
from typing import Any

import dagster as dg
from pydantic import Field

from chara_resources.avatar import AvatarResource, replace_dataset
from chara_resources.brainbox import BrainBoxResource
from chara_resources.folder_asset import FolderManifest
from chara_resources.settings import brainbox_pool
from chara_resources.storage import CharaStorage

from ..characters.resource import CharacterCatalog
from ..metadata import md_image, md_table
from ..partitions import modality_partitions
from .engine import (
    AvatarMedia,
    EmbeddingSet,
    IdentityDataset,
    collect_media,
    embed_media,
    labelled_set,
)
from .media import IdentificationError, Problem
from .planning import read_decisions, set_quality

GROUP = "identification"


def _counts_md(counts: dict[str, int], what: str) -> dg.MetadataValue:
    return md_table(["user", what], sorted(counts.items()))


def _with_problems(metadata: dict[str, Any], problems: list[Problem], limit: int = 20):
    """``metadata`` and, if there are problems, the first ``limit`` as ``problem_list``."""
    if not problems:
        return metadata
    more = f"… and {len(problems) - limit} more" if len(problems) > limit else ""
    rows = [(f"`{p.name}`", p.error[:300]) for p in problems[:limit]]
    return {**metadata, "problem_list": md_table(["item", "error"], rows, more=more)}


class AvatarMediaConfig(dg.Config):
    users: list[str] = Field(
        default_factory=list,
        description="the people to tell apart; empty: one per users/*.yaml file (users "
        "already in Avatar's labelled set are added)",
    )


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
    downloads = storage.work(context).step("downloads")
    store = avatar.store(context)
    try:
        users = config.users or sorted(characters.load().users)
        media, collected, labelled = collect_media(
            store,
            context.partition_key,
            users,
            downloads,
            storage.staging(context),
            context.log.info,
        )
    finally:
        store.close()
    context.log.info(
        f"{media.modality}: {len(media.files)} files ({downloads.computed} new, "
        f"{downloads.reused} downloaded before), {len(media.problems)} problems"
    )
    per_user = Counter(f.user for f in media.files if f.user)
    metadata = {
        "collected": collected,
        "labelled": labelled,
        "new_downloads": downloads.computed,
        "known_downloads": downloads.reused,
        "users": ", ".join(media.users),
        "labelled_per_user": _counts_md({u: per_user.get(u, 0) for u in media.users}, "samples"),
        "problems": len(media.problems),
        "avatar": media.avatar,
    }
    return dg.MaterializeResult(value=media, metadata=_with_problems(metadata, media.problems))


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
    work, folder = storage.work(context), storage.staging(context)
    try:
        models = brainbox.models(context)
        embedded, outcome = embed_media(models, work, avatar_media, folder, context.log.warning)
    except IdentificationError as exc:
        raise dg.Failure(str(exc)) from exc
    labelled = sum(s.user is not None for s in embedded.samples)
    metadata = {
        "samples": len(embedded.samples),
        "labelled": labelled,
        "unlabelled": len(embedded.samples) - labelled,
        "problems": len(embedded.problems),
        "computed": outcome.submitted,
        "reused": outcome.reused,
        "dim": embedded.dim,
        "decider": embedded.decider,
    }
    return dg.MaterializeResult(
        value=embedded, metadata=_with_problems(metadata, embedded.problems)
    )


identity_annotations = dg.AssetSpec(
    "identity_annotations",
    deps=[embedding_sets],
    partitions_def=modality_partitions,
    group_name=GROUP,
    kinds={"human"},
    description="A person's labels (who speaks, who is in the picture), given in the "
    "annotation service (`chara identify MODALITY`); reported here when they press FINISH.",
)


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
    try:
        decisions = read_decisions(storage.root_path, embedding_sets.modality)
        dataset, uploads = labelled_set(embedding_sets, decisions, storage.staging(context))
    except IdentificationError as exc:
        raise dg.Failure(str(exc)) from exc
    store = avatar.store(context)
    try:
        dataset.stash = replace_dataset(store, dataset.service, uploads)
    finally:
        store.close()
    dataset.avatar = store.location
    context.log.info(
        f"uploaded {len(dataset.entries)} {dataset.modality} samples to {store.location}; the "
        f"previous dataset is in resources/{dataset.stash}"
    )
    metadata = {
        "uploaded": len(dataset.entries),
        "per_user": _counts_md(dict(Counter(e.user for e in dataset.entries)), "samples"),
        "left_out": dg.MetadataValue.json(dataset.left_out),
        "previous_dataset": f"resources/{dataset.stash}",
        "problems": len(dataset.problems),
    }
    return dg.MaterializeResult(value=dataset, metadata=_with_problems(metadata, dataset.problems))


class IdentificationReport(FolderManifest):
    modality: str
    samples: int
    accuracy: float  # leave-one-out, 10-NN cosine vote
    per_user: dict[str, int]
    confusion: dict[str, dict[str, int]]
    plot: str = "projection.png"


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
    from .plots import projection_plot

    vectors = identity_dataset.matrix()
    truth = [e.user for e in identity_dataset.entries]
    quality = set_quality(vectors, truth)
    accuracy = round(quality.accuracy, 4)
    result = IdentificationReport(
        modality=identity_dataset.modality,
        samples=len(truth),
        accuracy=accuracy,
        per_user=quality.per_user,
        confusion=quality.confusion,
    ).bind(storage.staging(context))
    title = f"{result.modality} embeddings (PCA), LOO accuracy {quality.accuracy:.1%}"
    projection_plot(vectors, truth, result.path(result.plot), title=title)
    context.log.info(f"leave-one-out accuracy {quality.accuracy:.3f} over {len(truth)} samples")
    columns = list(next(iter(quality.confusion.values())).keys()) if quality.confusion else []
    rows = [[t, *(row[c] for c in columns)] for t, row in quality.confusion.items()]
    metadata = {
        "accuracy": dg.MetadataValue.float(accuracy),
        "samples": len(truth),
        "per_user": _counts_md(quality.per_user, "samples"),
        "confusion": md_table(["true \\ identified", *columns], rows),
        "projection": md_image(result.path(result.plot), "projection"),
    }
    return dg.MaterializeResult(value=result, metadata=metadata)


ASSETS = [
    avatar_media,
    embedding_sets,
    identity_annotations,
    identity_dataset,
    identification_report,
]
