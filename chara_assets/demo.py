"""The quick start's main job: every chain once, at demo size, for the demo character.

``chara demo`` runs, in the persistent Dagster instance (so the runs, metadata and reports are
in the UI afterwards), for one character|language (default ``kiki|en``):

1. ``language_job``: the sentence pool and its phonemes;
2. ``character_job`` and ``corpus_job``: the voice sample and ``lines`` selected sentences;
3. ``voice_job``: the review answered by ``auto_accept`` (written to the review log as
   automatic and shown in the metadata — a real character needs a person's review), the lines
   voiced, verified, trimmed and packed for Piper;
4. ``training_job``: a tiny Piper training (one epoch, warm-started from the packaged English
   voice where the language is English) and the report comparing checkpoints by ear;
5. ``paraphrase_job``: two templates paraphrased by the LLM (one answer each) and stored where
   Avatar reads them (the local Avatar folder when no Avatar server is configured).

The sizes here are for a first look on a laptop, not for a usable voice: a real voice needs an
hour of clips (``target`` 600 sentences) and hours of GPU training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chara_resources.languages import get_language


@dataclass(frozen=True)
class DemoSize:
    lines: int = 16
    epochs: int = 1
    batch_size: int = 4
    # Two templates, one LLM answer each: the embedded LLM takes 10-30 s an answer on 2 cores.
    templates: tuple[str, ...] = ("greeting", "timer_done")
    llm_attempts: int = 1


def run_configs(size: DemoSize, language: str) -> dict[str, dict[str, Any]]:
    """Run config per job name, at demo size."""
    voice = get_language(language).embedded_base_voice
    base_models = {language: voice} if voice else {}
    return {
        "corpus_job": {"ops": {"text_corpus": {"config": {"target": size.lines}}}},
        "voice_job": {"ops": {"reviewed_corpus": {"config": {"auto_accept": True}}}},
        "training_job": {
            "ops": {
                "piper_checkpoints": {
                    "config": {
                        "epochs": size.epochs,
                        "checkpoint_epochs": 1,
                        "batch_size": size.batch_size,
                        "base_models": base_models,
                        "poll_s": 2.0,
                    }
                }
            }
        },
        "paraphrase_job": {
            "ops": {
                "paraphrase_sets": {
                    "config": {
                        "templates": list(size.templates),
                        "max_attempts": size.llm_attempts,
                    }
                }
            }
        },
    }


# The order the jobs run in; each needs the ones before it.
JOBS = ("language_job", "character_job", "corpus_job", "voice_job", "training_job")
PARAPHRASE_JOB = "paraphrase_job"
