"""A catalogue of bad inputs, tried against ``chara check`` and against what the assets read.

    .venv/bin/python bench/bad_inputs.py [--only WORD] [--verbose]

Each case starts from a fresh copy of the demo characters, users and templates and breaks one
thing: a character or user field, a voice file, a template, a run-config field or a resource
field. Then:

- **check**: ``check_configuration`` (what ``chara check`` prints) on that copy;
- **asset**: what a run meets: ``voice_sample`` materialized for the broken character (an
  ephemeral Dagster instance, a storage root holding a good earlier version of the asset);
  for user and template files the loaders the sensors and ``paraphrase_sets`` use; for config
  fields the asset run with that config (for a resource field, a run with that resource).

Each outcome is classified: **clear** (an error naming the file or field and containing the
words that say what is wrong), **unclear** (an error, but not that one), **silent** (accepted
without a word), **lost** (the earlier good version of the asset or its work-cache items
changed or vanished). Some cases are accepted on purpose: they say why, and count apart.
Prints one line per case and the totals. Run config-field cases do not exist for ``chara
check`` (it does not see run config): they count for the asset side only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chara_resources.settings import PROJECT_ROOT


@dataclass
class Workspace:
    root: Path

    @property
    def characters(self) -> Path:
        return self.root / "characters"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def kiki(self) -> Path:
        return self.characters / "kiki.yaml"

    @property
    def kiki_voice(self) -> Path:
        return self.characters / "voices" / "kiki" / "en.wav"

    def edit(self, path: Path, old: str, new: str) -> None:
        text = path.read_text()
        if old not in text:
            raise AssertionError(f"{old!r} not in {path}")
        path.write_text(text.replace(old, new, 1))


@dataclass
class Case:
    kind: str  # character | voice | user | template | config | resource
    name: str
    change: Callable[[Workspace], None]
    names: tuple[str, ...]  # a clear error names one of these (file or field)
    says: tuple[str, ...]  # ... and contains all of these (what is wrong)
    accepted_because: str = ""  # accepted on purpose (and why)
    config: dict = field(default_factory=dict)  # run config of the asset, for config cases
    asset: str = "voice_sample"
    partition: str = "kiki|en"


def _yaml(path_name: str, text: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        folder = {"c": ws.characters, "u": ws.users, "t": ws.templates}[path_name[0]]
        (folder / path_name[2:]).write_text(text)

    return change


def _kiki(old: str, new: str) -> Callable[[Workspace], None]:
    return lambda ws: ws.edit(ws.kiki, old, new)


def _sam(old: str, new: str) -> Callable[[Workspace], None]:
    return lambda ws: ws.edit(ws.users / "sam.yaml", old, new)


def _greetings(old: str, new: str) -> Callable[[Workspace], None]:
    return lambda ws: ws.edit(ws.templates / "greetings.yaml", old, new)


def _voice(write: Callable[[Path], None]) -> Callable[[Workspace], None]:
    return lambda ws: write(ws.kiki_voice)


def _noise(path: Path, seconds: float = 4.0, rate: int = 22050) -> None:
    rng = np.random.default_rng(3)
    sf.write(path, rng.uniform(-0.8, 0.8, int(rate * seconds)), rate)


def _tone(path: Path, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), rate)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 10])


def _symlink_out(ws: Workspace) -> None:
    ws.kiki_voice.unlink()
    ws.kiki_voice.symlink_to("/etc/passwd")


def _dir_voice(ws: Workspace) -> None:
    ws.kiki_voice.unlink()
    ws.kiki_voice.mkdir()


def _duplicate(folder: str, name: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        base = getattr(ws, folder)
        shutil.copy(base / f"{name}.yaml", base / f"{name}.yml")

    return change


def _nan(path: Path) -> None:
    data = np.full(22050 * 3, np.nan, dtype=np.float32)
    sf.write(path, data, 22050, subtype="FLOAT")


def _png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))


CHARACTER = "display_name: Zoe\ngender: female\ndescription: A test.\nlanguages: [en]\n"
CLIP = "voice_sample:\n  - file: voices/kiki/en.wav\n    text: Hello.\n"
TEMPLATE = 'templates:\n  - name: t1\n    lines:\n      en: ["Hello {name}."]\n'


def cases() -> list[Case]:
    c: list[Case] = []

    def add(kind, name, change, names, says, **kw):
        c.append(Case(kind, name, change, tuple(names), tuple(says), **kw))

    kiki = ("kiki.yaml",)
    # --- character fields (kiki.yaml, read by voice_sample) ---------------------------------
    add(
        "character",
        "invalid YAML",
        _kiki("languages: [en, de]", "languages: [en, de"),
        kiki,
        ["invalid YAML", "line"],
    )
    add("character", "empty file", lambda ws: ws.kiki.write_text(""), kiki, ["empty file"])
    add(
        "character",
        "a list, not a mapping",
        lambda ws: ws.kiki.write_text("- a\n- b\n"),
        kiki,
        ["expected a mapping"],
    )
    add(
        "character",
        "misspelt field",
        _kiki("languages:", "langauges:"),
        kiki,
        ["langauges", "unknown field"],
    )
    add(
        "character",
        "no display_name",
        _kiki("display_name: Kiki\n", ""),
        kiki,
        ["display_name", "Field required"],
    )
    add(
        "character",
        "display_name of spaces",
        _kiki("display_name: Kiki", 'display_name: " "'),
        kiki,
        ["display_name", "empty"],
    )
    add(
        "character",
        "display_name a number",
        _kiki("display_name: Kiki", "display_name: 123"),
        kiki,
        ["display_name", "string"],
    )
    add(
        "character",
        "unknown gender",
        _kiki("gender: female", "gender: robot"),
        kiki,
        ["gender", "female"],
    )
    add(
        "character",
        "gender in capitals",
        _kiki("gender: female", "gender: Female"),
        kiki,
        ["gender", "female"],
    )
    add(
        "character",
        "description of spaces",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("description:")[0]
            + 'description: "   "\n'
            + "languages:"
            + ws.kiki.read_text().split("languages:", 1)[1]
        ),
        kiki,
        ["description", "empty"],
    )
    add(
        "character",
        "no languages",
        _kiki("languages: [en, de]", "languages: []"),
        kiki,
        ["languages", "at least 1"],
    )
    add(
        "character",
        "unknown language",
        _kiki("languages: [en, de]", "languages: [en, fr]"),
        kiki,
        ["languages.1", "unknown language 'fr'"],
    )
    add(
        "character",
        "language twice",
        _kiki("languages: [en, de]", "languages: [en, en]"),
        kiki,
        ["languages", "twice"],
    )
    add(
        "character",
        "languages a string",
        _kiki("languages: [en, de]", "languages: en"),
        kiki,
        ["languages", "list"],
    )
    add(
        "character",
        "name a number",
        lambda ws: ws.kiki.write_text("name: 123\n" + ws.kiki.read_text()),
        kiki,
        ["name", "must be text"],
    )
    add(
        "character",
        "name differs from the file",
        lambda ws: ws.kiki.write_text("name: zoe\n" + ws.kiki.read_text()),
        kiki,
        ["name", "differs from the file name"],
    )
    add(
        "character",
        "banned word of spaces",
        lambda ws: ws.kiki.write_text(ws.kiki.read_text() + 'banned_words: [" "]\n'),
        kiki,
        ["banned_words.0", "empty"],
    )
    add(
        "character",
        "banned_words a string",
        lambda ws: ws.kiki.write_text(ws.kiki.read_text() + "banned_words: darn\n"),
        kiki,
        ["banned_words", "list"],
    )
    add(
        "character",
        "not UTF-8",
        lambda ws: ws.kiki.write_bytes(
            ws.kiki.read_bytes().replace(b"Kiki", "Kïki".encode("latin-1"), 1)
        ),
        kiki,
        ["UTF-8"],
    )
    add(
        "character",
        "no voice_sample",
        lambda ws: ws.kiki.write_text(ws.kiki.read_text().split("voice_sample:")[0]),
        kiki,
        ["voice_sample", "Field required"],
    )
    add(
        "character",
        "voice_sample empty",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("voice_sample:")[0] + "voice_sample: []\n"
        ),
        kiki,
        ["voice_sample", "at least 1"],
    )
    add(
        "character",
        "voice clip text of spaces",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("voice_sample:")[0]
            + 'voice_sample:\n  - file: voices/kiki/en.wav\n    text: " "\n'
        ),
        kiki,
        ["voice_sample.0.text", "empty"],
    )
    add(
        "character",
        "voice clip without text",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("voice_sample:")[0]
            + "voice_sample:\n  - file: voices/kiki/en.wav\n"
        ),
        kiki,
        ["voice_sample.0.text", "Field required"],
    )
    add(
        "character",
        "voice clip in an unknown language",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("voice_sample:")[0]
            + "voice_sample:\n  - file: voices/kiki/en.wav\n    text: Hi.\n    language: fr\n"
        ),
        kiki,
        ["voice_sample.0.language", "unknown language"],
    )
    add(
        "character",
        "voice clip not a mapping",
        lambda ws: ws.kiki.write_text(
            ws.kiki.read_text().split("voice_sample:")[0]
            + "voice_sample:\n  - voices/kiki/en.wav\n"
        ),
        kiki,
        ["voice_sample.0", "dictionary"],
    )
    add(
        "character",
        "two files for kiki",
        _duplicate("characters", "kiki"),
        kiki + ("kiki.yml",),
        ["keep one of the two files"],
    )
    add(
        "character",
        "file name in capitals",
        lambda ws: shutil.move(ws.kiki, ws.characters / "Kiki.yaml"),
        ("Kiki.yaml",),
        ["not allowed", "rename the file"],
        asset="catalog",
    )
    add(
        "character",
        "file name with a space",
        lambda ws: shutil.move(ws.kiki, ws.characters / "ki ki.yaml"),
        ("ki ki.yaml",),
        ["rename the file"],
        asset="catalog",
    )
    add(
        "character",
        "file name with '|'",
        lambda ws: shutil.move(ws.kiki, ws.characters / "ki|ki.yaml"),
        ("ki|ki.yaml",),
        ["rename the file"],
        asset="catalog",
    )
    add(
        "character",
        "a second clip without its language spoken",
        _kiki("languages: [en, de]", "languages: [en, de, ru]"),
        kiki,
        [],
        accepted_because="a character may speak a language it has no clip in: zero-shot "
        "cloners clone across languages; voice_sample logs a warning and says "
        "same_language=false",
        partition="kiki|ru",
    )
    # --- voice files -------------------------------------------------------------------------
    vf = ("voice_sample.0.file",)
    add("voice", "voice file missing", lambda ws: ws.kiki_voice.unlink(), vf, ["not found"])
    add(
        "voice",
        "absolute path outside the project",
        _kiki("voices/kiki/en.wav", "/etc/passwd"),
        vf,
        ["outside the characters folder"],
    )
    add(
        "voice",
        "'..' out of the project",
        _kiki("voices/kiki/en.wav", "../../../../etc/hostname"),
        vf,
        ["outside the characters folder"],
    )
    add("voice", "symbolic link out of the project", _symlink_out, vf, ["outside"])
    add("voice", "a folder, not a file", _dir_voice, vf, ["not found"])
    add("voice", "0 bytes", _voice(lambda p: p.write_bytes(b"")), vf, ["cannot read audio"])
    add(
        "voice",
        "a text file",
        _voice(lambda p: p.write_text("root:x:0:0::/root:/bin/sh\n")),
        vf,
        ["cannot read audio"],
    )
    add("voice", "a PNG renamed .wav", _voice(_png), vf, ["cannot read audio"])
    add(
        "voice",
        "random bytes",
        _voice(lambda p: p.write_bytes(os.urandom(50000))),
        vf,
        ["cannot read audio"],
    )
    add(
        "voice",
        "WAV header, no samples",
        _voice(lambda p: sf.write(p, np.zeros(0), 22050)),
        vf,
        ["empty"],
    )
    add("voice", "truncated WAV", _voice(_truncate), vf, ["shorter than"])
    add(
        "voice",
        "silent",
        _voice(lambda p: sf.write(p, np.zeros(22050 * 3), 22050)),
        vf,
        ["no sound louder than"],
    )
    add("voice", "white noise under a WAV header", _voice(_noise), vf, ["noise, not speech"])
    add(
        "voice",
        "a 600 s sample",
        _voice(lambda p: _tone(p, 600.0, 8000)),
        vf,
        ["600 s long, longer than 60 s"],
    )
    add("voice", "a 0.3 s sample", _voice(lambda p: _tone(p, 0.3)), vf, ["shorter than 1 s"])
    add("voice", "NaN samples", _voice(_nan), vf, ["not finite"])
    add(
        "voice",
        "stereo speech (valid)",
        _voice(lambda p: sf.write(p, np.stack([sf.read(p)[0]] * 2, axis=1), 22050)),
        vf,
        [],
        accepted_because="valid audio in another format: resampled and mixed to mono",
    )
    # --- users ---------------------------------------------------------------------------------
    sam = ("sam.yaml",)
    add(
        "user",
        "invalid YAML",
        lambda ws: ws.edit(ws.users / "sam.yaml", "relationships:", "relationships: ["),
        sam,
        ["invalid YAML"],
        asset="catalog",
    )
    add(
        "user",
        "display_name of spaces",
        _sam("display_name: Sam", 'display_name: "  "'),
        sam,
        ["display_name", "empty"],
        asset="catalog",
    )
    add(
        "user",
        "name a number",
        lambda ws: (ws.users / "sam.yaml").write_text(
            "name: 7\n" + (ws.users / "sam.yaml").read_text()
        ),
        sam,
        ["name", "must be text"],
        asset="catalog",
    )
    add(
        "user",
        "relationship to an unknown character",
        _sam("relationships:", "relationships:\n  zed: friends"),
        sam,
        ["relationships.zed", "no such character"],
        asset="catalog",
    )
    add(
        "user",
        "relationship to a broken character",
        lambda ws: ws.edit(ws.characters / "boris.yaml", "gender: male", "gender: robot"),
        sam,
        ["relationships.boris", "broken"],
        asset="catalog",
    )
    add(
        "user",
        "relationship of spaces",
        _sam("relationships:", 'relationships:\n  zoe2: " "'),
        sam,
        ["relationships.zoe2"],
        asset="catalog",
    )
    add(
        "user",
        "relationships a list",
        lambda ws: (ws.users / "sam.yaml").write_text("display_name: Sam\nrelationships: [kiki]\n"),
        sam,
        ["relationships", "dictionary"],
        asset="catalog",
    )
    add(
        "user",
        "unknown field",
        lambda ws: (ws.users / "sam.yaml").write_text(
            (ws.users / "sam.yaml").read_text() + "age: 40\n"
        ),
        sam,
        ["age", "unknown field"],
        asset="catalog",
    )
    add(
        "user",
        "two files for sam",
        _duplicate("users", "sam"),
        sam + ("sam.yml",),
        ["keep one of the two files"],
        asset="catalog",
    )
    # --- templates -----------------------------------------------------------------------------
    g = ("greetings.yaml",)
    add(
        "template",
        "invalid YAML",
        _greetings("templates:", "templates: ["),
        g,
        ["invalid YAML"],
        asset="templates",
    )
    add(
        "template",
        "empty file",
        lambda ws: (ws.templates / "greetings.yaml").write_text(""),
        g,
        ["empty file"],
        asset="templates",
    )
    add(
        "template",
        "no 'templates' key",
        _yaml("t/x.yaml", "items: []\n"),
        ("x.yaml",),
        ["templates"],
        asset="templates",
    )
    add(
        "template",
        "unbalanced brace",
        _yaml("t/x.yaml", TEMPLATE.replace("{name}", "{name")),
        ("x.yaml",),
        ["unbalanced brace", "line"],
        asset="templates",
    )
    add(
        "template",
        "variable not declared",
        _yaml("t/x.yaml", TEMPLATE),
        ("x.yaml",),
        ["name"],
        asset="templates",
    )
    add(
        "template",
        "variable never used",
        _yaml(
            "t/x.yaml",
            TEMPLATE.replace('"Hello {name}."', '"Hello."')
            + "    variables:\n      name: {type: text, "
            "examples: [Sam], description: who}\n",
        ),
        ("x.yaml",),
        ["never used"],
        asset="templates",
    )
    add(
        "template",
        "unknown language",
        _yaml("t/x.yaml", TEMPLATE.replace("Hello {name}.", "Hi.").replace("en:", "fr:")),
        ("x.yaml",),
        ["unknown language 'fr'"],
        asset="templates",
    )
    add(
        "template",
        "unknown variable type",
        _yaml(
            "t/x.yaml", TEMPLATE + "    variables:\n      name: {type: date, description: who}\n"
        ),
        ("x.yaml",),
        ["unknown type"],
        asset="templates",
    )
    add(
        "template",
        "variable without description",
        _yaml("t/x.yaml", TEMPLATE + "    variables:\n      name: {type: text, examples: [Sam]}\n"),
        ("x.yaml",),
        ["description"],
        asset="templates",
    )
    add(
        "template",
        "int variable min above max",
        _yaml(
            "t/x.yaml",
            TEMPLATE.replace("{name}", "{n}")
            + "    variables:\n      n: {type: int, min: 9, max: 1, description: "
            "a number}\n",
        ),
        ("x.yaml",),
        ["min"],
        asset="templates",
    )
    add(
        "template",
        "options without options",
        _yaml(
            "t/x.yaml",
            TEMPLATE + "    variables:\n"
            "      name: {type: options, options: [], description: who}\n",
        ),
        ("x.yaml",),
        ["options"],
        asset="templates",
    )
    add(
        "template",
        "line of spaces",
        _yaml("t/x.yaml", TEMPLATE.replace('"Hello {name}."', '" "')),
        ("x.yaml",),
        ["empty"],
        asset="templates",
    )
    add(
        "template",
        "no lines",
        _yaml("t/x.yaml", "templates:\n  - name: t1\n"),
        ("x.yaml",),
        ["lines"],
        asset="templates",
    )
    add(
        "template",
        "name defined twice",
        _yaml(
            "t/x.yaml",
            TEMPLATE.replace("Hello {name}.", "Hi.")
            + TEMPLATE.split("templates:\n")[1].replace("Hello {name}.", "Hello."),
        ),
        ("x.yaml",),
        ["duplicate template name"],
        asset="templates",
    )
    add(
        "template",
        "name of another file",
        lambda ws: (ws.templates / "zz.yaml").write_text(
            (ws.templates / "greetings.yaml").read_text()
        ),
        ("zz.yaml",),
        ["duplicate template name"],
        asset="templates",
    )
    add(
        "template",
        "languages differ in variables",
        _yaml(
            "t/x.yaml",
            "templates:\n  - name: t1\n"
            "    variables:\n      name: {type: text, examples: [Sam], description: who}\n"
            '    lines:\n      en: ["Hello {name}."]\n      de: ["Hallo."]\n',
        ),
        ("x.yaml",),
        ["variables differ"],
        asset="templates",
    )
    add(
        "template",
        "unknown field",
        _yaml("t/x.yaml", TEMPLATE + "    mood: happy\n"),
        ("x.yaml",),
        ["unknown field 'mood'"],
        asset="templates",
    )
    add(
        "template",
        "not UTF-8",
        lambda ws: (ws.templates / "x.yaml").write_bytes(
            TEMPLATE.replace("Hello", "Hällo").encode("latin-1")
        ),
        ("x.yaml",),
        ["UTF-8"],
        asset="templates",
    )

    # --- run config fields ---------------------------------------------------------------------
    def cfg(name, asset, values, names, says):
        add("config", name, lambda ws: None, names, says, config=values, asset=asset)

    cfg(
        "voice_sample sample_rate: 0",
        "voice_sample",
        {"sample_rate": 0},
        ["sample_rate"],
        ["greater than or equal to 8000"],
    )
    cfg(
        "voice_sample sample_rate: -22050",
        "voice_sample",
        {"sample_rate": -22050},
        ["sample_rate"],
        ["greater than or equal"],
    )
    cfg(
        "voice_sample gap_s: -1",
        "voice_sample",
        {"gap_s": -1.0},
        ["gap_s"],
        ["greater than or equal to 0"],
    )
    cfg(
        "voice_sample target_level_db: 50",
        "voice_sample",
        {"target_level_db": 50.0},
        ["target_level_db"],
        ["less than or equal to -6"],
    )
    cfg(
        "voice_sample target_level_db: -200",
        "voice_sample",
        {"target_level_db": -200.0},
        ["target_level_db"],
        ["greater than or equal to -50"],
    )
    cfg(
        "voice_sample sample_rate: 'fast'",
        "voice_sample",
        {"sample_rate": "fast"},
        ["sample_rate"],
        ["Int"],
    )
    cfg(
        "text_corpus target: 0",
        "text_corpus",
        {"target": 0},
        ["target"],
        ["greater than or equal to 1"],
    )
    cfg(
        "text_corpus target: -5",
        "text_corpus",
        {"target": -5},
        ["target"],
        ["greater than or equal to 1"],
    )
    cfg("text_corpus foreign: maybe", "text_corpus", {"foreign": "maybe"}, ["foreign"], ["maybe"])
    cfg(
        "sentence_pool min_length > max_length",
        "sentence_pool",
        {"min_length": 120, "max_length": 100},
        ["min_length"],
        ["max_length"],
    )
    cfg(
        "sentence_pool max_capitals: -1",
        "sentence_pool",
        {"max_capitals": -1},
        ["max_capitals"],
        ["greater than or equal to 0"],
    )
    cfg(
        "sentence_pool extra file missing",
        "sentence_pool",
        {"extra_files": ["/nonexistent/corpus.txt"]},
        ["/nonexistent/corpus.txt"],
        [],
    )
    cfg(
        "cloned_audio max_failure_ratio: 2",
        "cloned_audio",
        {"max_failure_ratio": 2.0},
        ["max_failure_ratio"],
        ["less than or equal to 1"],
    )
    cfg(
        "trimmed_clips max_attempts: 0",
        "trimmed_clips",
        {"max_attempts": 0},
        ["max_attempts"],
        ["greater than or equal to 1"],
    )
    cfg(
        "trimmed_clips speaker_reference: both",
        "trimmed_clips",
        {"speaker_reference": "both"},
        ["speaker_reference"],
        ["both"],
    )
    cfg(
        "trimmed_clips min_similarity: 5",
        "trimmed_clips",
        {"min_similarity": 5.0},
        ["min_similarity"],
        ["less than or equal to 1"],
    )
    cfg(
        "trimmed_clips target_hours: 0",
        "trimmed_clips",
        {"target_hours": 0.0},
        ["target_hours"],
        ["greater than 0"],
    )
    cfg(
        "piper_checkpoints epochs: 0",
        "piper_checkpoints",
        {"epochs": 0},
        ["epochs"],
        ["greater than or equal to 1"],
    )
    cfg(
        "piper_checkpoints batch_size: 0",
        "piper_checkpoints",
        {"batch_size": 0},
        ["batch_size"],
        ["greater than or equal to 1"],
    )
    cfg(
        "piper_checkpoints validation_split: 1",
        "piper_checkpoints",
        {"validation_split": 1.0},
        ["validation_split"],
        ["less than 1"],
    )
    cfg(
        "paraphrase_sets paraphrases_per_answer: 0",
        "paraphrase_sets",
        {"paraphrases_per_answer": 0},
        ["paraphrases_per_answer"],
        ["greater than or equal to 1"],
    )
    cfg(
        "paraphrase_sets batch_size: 0",
        "paraphrase_sets",
        {"batch_size": 0},
        ["batch_size"],
        ["greater than or equal to 1"],
    )
    cfg(
        "paraphrase_sets max_rejection: -1",
        "paraphrase_sets",
        {"max_rejection": -1.0},
        ["max_rejection"],
        ["greater than or equal to 0"],
    )
    cfg(
        "checkpoint_report training_clips: -1",
        "checkpoint_report",
        {"training_clips": -1},
        ["training_clips"],
        ["greater than or equal to 0"],
    )
    add(
        "resource",
        "storage min_free_mb: -5",
        lambda ws: None,
        ["min_free_mb"],
        ["greater than or equal to 0"],
        config={"min_free_mb": -5.0},
        asset="storage",
    )
    add(
        "resource",
        "avatar retry_for_s: -1",
        lambda ws: None,
        ["retry_for_s"],
        ["greater than or equal to 0"],
        config={"retry_for_s": -1.0},
        asset="avatar",
    )
    return c


# --- running a case --------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".run.lock")  # the partition lock: who ran last
    }


def classify(messages: list[str], case: Case) -> str:
    if not messages:
        return "accepted" if case.accepted_because else "silent"
    for message in messages:
        if any(n in message for n in case.names) and all(w in message for w in case.says):
            return "clear"
    return "unclear"


class Runner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def workspace(self) -> Workspace:
        self.count += 1
        ws = Workspace(self.root / f"case-{self.count:03d}")
        ws.root.mkdir()
        shutil.copytree(PROJECT_ROOT / "characters", ws.characters, symlinks=True)
        shutil.copytree(PROJECT_ROOT / "users", ws.users)
        shutil.copytree(PROJECT_ROOT / "templates", ws.templates)
        return ws

    def resources(self, ws: Workspace, home: Path) -> dict:
        from chara_assets.characters.resource import CharacterCatalog
        from chara_assets.paraphrase.resource import TemplateFolder
        from chara_resources.avatar import AvatarResource
        from chara_resources.brainbox import BrainBoxResource
        from chara_resources.storage import CharaStorage, FolderIOManager

        storage = CharaStorage(root=str(home))
        return {
            "storage": storage,
            "io_manager": FolderIOManager(storage=storage),
            "characters": CharacterCatalog(
                characters_dir=str(ws.characters), users_dir=str(ws.users), voice_folders=[]
            ),
            "templates": TemplateFolder(templates_dir=str(ws.templates)),
            # No case may reach a server: nothing listens on port 9.
            "brainbox": BrainBoxResource(url="http://127.0.0.1:9", retry_for_s=0),
            "avatar": AvatarResource(local_folder=str(home / "avatar")),
        }

    def check(self, ws: Workspace) -> list[str]:
        from chara_assets.configuration import check_configuration

        res = self.resources(ws, ws.root / "home")
        return check_configuration(res["characters"], res["templates"]).errors

    def asset(self, ws: Workspace, case: Case, good_home: Path) -> tuple[list[str], bool]:
        """Messages of what a run meets, and whether finished work was lost."""
        if case.asset == "catalog":
            return [
                str(e) for e in self.resources(ws, good_home)["characters"].load().errors
            ], False
        if case.asset == "templates":
            return [str(e) for e in self.resources(ws, good_home)["templates"].load().errors], False
        if case.kind == "resource":
            return self._resource(case), False
        if case.kind == "config" and case.asset not in ("voice_sample", "sentence_pool"):
            return self._config(case), False
        home = ws.root / "home"
        shutil.copytree(good_home, home)
        before = _digest(home / "assets") | {
            "work/" + k: v for k, v in _digest(home / "work").items()
        }
        messages = self._materialize(ws, case, home)
        after = _digest(home / "assets") | {
            "work/" + k: v for k, v in _digest(home / "work").items()
        }
        # A failed run must leave every file as it was; a run that succeeds (an input accepted
        # on purpose) writes a new version of the asset, but keeps every work-cache item.
        kept = before if messages else {k: v for k, v in before.items() if k.startswith("work/")}
        changed = [k for k, v in kept.items() if after.get(k) != v]
        if changed and os.environ.get("BAD_INPUTS_DEBUG"):
            print("changed:", changed)
        return messages, bool(changed)

    def _resource(self, case: Case) -> list[str]:
        import pydantic

        from chara_resources.avatar import AvatarResource
        from chara_resources.storage import CharaStorage

        cls = {"storage": CharaStorage, "avatar": AvatarResource}[case.asset]
        try:
            cls(**case.config)
        except pydantic.ValidationError as exc:  # what Dagster shows when it loads the resource
            return [str(exc)]
        return []

    def _config(self, case: Case) -> list[str]:
        """The asset's config object built from the run config, as Dagster builds it when the
        step starts (after loading its inputs, which these assets' runs would need BrainBox
        for): its ValidationError is the step's error."""
        import pydantic

        from chara_assets.paraphrase.assets import ParaphraseSetsConfig
        from chara_assets.voice.audio_assets import ClonedAudioConfig
        from chara_assets.voice.clip_assets import TrimmedClipsConfig
        from chara_assets.voice.corpus_assets import TextCorpusConfig
        from chara_assets.voice.training_assets import (
            CheckpointReportConfig,
            PiperCheckpointsConfig,
        )

        cls = {
            "text_corpus": TextCorpusConfig,
            "cloned_audio": ClonedAudioConfig,
            "trimmed_clips": TrimmedClipsConfig,
            "piper_checkpoints": PiperCheckpointsConfig,
            "checkpoint_report": CheckpointReportConfig,
            "paraphrase_sets": ParaphraseSetsConfig,
        }[case.asset]
        try:
            cls(**case.config)
        except pydantic.ValidationError as exc:
            return [str(exc)]
        return []

    def _materialize(self, ws: Workspace, case: Case, home: Path) -> list[str]:
        import dagster as dg

        from chara_assets.definitions import defs
        from chara_assets.partitions import CHARACTER_DIMENSION

        assets = list(defs.assets)
        target = next(a for a in assets if a.key.to_user_string() == (case.asset or "x"))
        partition = "en" if case.asset == "sentence_pool" else case.partition
        run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        if case.config:
            run_config["ops"] = {case.asset: {"config": case.config}}
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki", "boris"])
            try:
                result = dg.materialize(
                    assets,
                    selection=[target],
                    instance=instance,
                    resources=self.resources(ws, home),
                    partition_key=partition,
                    run_config=run_config,
                    raise_on_error=False,
                )
            except dg.DagsterInvalidConfigError as exc:
                return [str(exc)]
        if result.success:
            return []
        messages = []
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            parts = []
            while error is not None:
                parts.append(error.message)
                error = error.cause
            messages.append("\n".join(parts))
        return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="only cases whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="print every message")
    args = parser.parse_args()
    selected = [c for c in cases() if not args.only or args.only in c.name]
    root = Path(tempfile.mkdtemp(prefix="chara-bad-inputs-"))
    os.environ["CHARA_HOME"] = str(root / "unused-home")
    started = time.monotonic()
    try:
        runner = Runner(root)
        good = runner.workspace()
        good_home = root / "good-home"
        messages = runner._materialize(
            good, Case("good", "good", lambda ws: None, (), ()), good_home
        )
        if messages:
            raise SystemExit(f"the good configuration failed: {messages}")
        totals = {"check": Counter(), "asset": Counter()}
        for case in selected:
            ws = runner.workspace()
            case.change(ws)
            check = (
                "n/a" if case.kind in ("config", "resource") else classify(runner.check(ws), case)
            )
            asset_messages, lost = runner.asset(ws, case, good_home)
            asset = "lost" if lost else classify(asset_messages, case)
            if check != "n/a":
                totals["check"][check] += 1
            totals["asset"][asset] += 1
            print(f"{case.kind:>9} | {case.name:<44} | check {check:<8} | asset {asset}")
            if args.verbose or "unclear" in (check, asset) or "silent" in (check, asset):
                shown = runner.check(ws) if check not in ("n/a", "clear") else []
                for message in (shown or asset_messages)[:2]:
                    print("          " + message.replace("\n", "\n          ")[:600])
            if case.accepted_because:
                print(f"          accepted on purpose: {case.accepted_because}")
            shutil.rmtree(ws.root, ignore_errors=True)
        print(f"\n{len(selected)} bad inputs in {time.monotonic() - started:.0f} s")
        for side, counter in totals.items():
            print(
                f"{side:>6}: tried {sum(counter.values())}, clear {counter['clear']}, unclear "
                f"{counter['unclear']}, silent {counter['silent']}, accepted on purpose "
                f"{counter['accepted']}, data lost {counter['lost']}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
