"""Everything chara offers Dagster, assembled in one place."""

from __future__ import annotations

import os

import dagster as dg

from chara_resources.avatar import AvatarResource
from chara_resources.brainbox import BrainBoxResource
from chara_resources.settings import chara_home
from chara_resources.storage import CharaStorage, FolderIOManager

from .characters.resource import CharacterCatalog
from .characters.sensors import build_character_sensor
from .identification.assets import ASSETS as IDENTIFICATION_ASSETS
from .paraphrase.assets import avatar_paraphrase_stats, avatar_paraphrases, paraphrase_sets
from .paraphrase.resource import TemplateFolder
from .paraphrase.sensors import build_template_sensor
from .pool_sensor import pool_slots
from .voice.assets import voice_sample
from .voice.audio_assets import augmented_lines, cloned_audio, cloner_voice
from .voice.clip_assets import piper_archive, trimmed_clips
from .voice.corpus_assets import (
    corpus_review,
    pool_phonemes,
    reviewed_corpus,
    sentence_pool,
    text_corpus,
)
from .voice.training_assets import (
    checkpoint_report,
    deliver_voice_job,
    delivered_voice,
    piper_checkpoints,
)

# What the character sensor runs for each new character|language; grows as chains land.
# (text_corpus needs its language's pool, which `language_job` builds: `chara run` runs both.)
character_job = dg.define_asset_job(
    "character_job",
    selection=dg.AssetSelection.assets(voice_sample),
    description="Builds a new character's datasets for one language.",
)
language_job = dg.define_asset_job(
    "language_job",
    selection=dg.AssetSelection.assets(sentence_pool, pool_phonemes),
    description="The sentence pool of one language and its phonemes (shared by characters).",
)
corpus_job = dg.define_asset_job(
    "corpus_job",
    selection=dg.AssetSelection.assets(text_corpus),
    description="Selects a character's sentences for one language (after language_job).",
)

voice_job = dg.define_asset_job(
    "voice_job",
    selection=dg.AssetSelection.assets(
        reviewed_corpus, augmented_lines, cloner_voice, cloned_audio, trimmed_clips, piper_archive
    ),
    description="After the review: the character's lines voiced, verified, trimmed and packed "
    "for Piper (hours of BrainBox work at the default target).",
)
training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.assets(piper_checkpoints, checkpoint_report),
    description="Trains the character's Piper voice on its archive and writes the report that "
    "compares the checkpoints.",
)

paraphrase_job = dg.define_asset_job(
    "paraphrase_job",
    selection=dg.AssetSelection.assets(
        avatar_paraphrase_stats, paraphrase_sets, avatar_paraphrases
    ),
    description="Paraphrases templates for one character|language and uploads them to Avatar "
    "(the template sensor names the templates in the run config).",
)

storage = CharaStorage(root=str(chara_home()))

defs = dg.Definitions(
    assets=[
        voice_sample,
        sentence_pool,
        pool_phonemes,
        text_corpus,
        corpus_review,
        reviewed_corpus,
        augmented_lines,
        cloner_voice,
        cloned_audio,
        trimmed_clips,
        piper_archive,
        piper_checkpoints,
        checkpoint_report,
        delivered_voice,
        *IDENTIFICATION_ASSETS,
        avatar_paraphrase_stats,
        paraphrase_sets,
        avatar_paraphrases,
    ],
    jobs=[
        character_job,
        language_job,
        corpus_job,
        voice_job,
        training_job,
        paraphrase_job,
        deliver_voice_job,
    ],
    sensors=[
        build_character_sensor(character_job),
        build_template_sensor(paraphrase_job),
        pool_slots,
    ],
    resources={
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        # Empty URLs: the embedded BrainBox and the local Avatar folder (see README).
        "brainbox": BrainBoxResource(
            url=os.environ.get("CHARA_BRAINBOX_URL", ""),
            # "embedded": a BrainBox elsewhere that runs chara's CPU deciders
            role_profile=os.environ.get("CHARA_BRAINBOX_PROFILE", ""),
        ),
        "avatar": AvatarResource(
            url=os.environ.get("CHARA_AVATAR_URL", ""),
            trusted=os.environ.get("CHARA_AVATAR_TRUSTED", "") == "1",
        ),
        "templates": TemplateFolder(),
        "characters": CharacterCatalog(
            characters_dir=os.environ.get("CHARA_CHARACTERS", "characters"),
            users_dir=os.environ.get("CHARA_USERS", "users"),
        ),
    },
)
