"""The language registry (chara_resources/languages.py) is the only place that knows languages.

Every language-keyed table is derived from it (checked table by table, and by registering a
fourth language and seeing every table pick it up), and no module of chara_assets or
chara_resources spells a table by language code (checked on the source with ast).
"""

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chara_assets.paraphrase import grammar, prompts, restore
from chara_assets.paraphrase.templates import Slot, Text, parse_templates
from chara_assets.voice import checkpoint_report, selection, verification
from chara_resources import decider_shapes, languages
from chara_resources.embedded import recognition, speech
from chara_resources.languages import (
    LANGUAGES,
    PerLanguage,
    get_language,
    guess_language,
    load_language,
)

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "chara_resources" / "languages.py"

# Every table derived from the registry: (name, table, the field it holds; None: the table
# holds the languages whose field is set).
DERIVED = [
    ("selection.NATIVE_PHONEMES", selection.NATIVE_PHONEMES, lambda lang: lang.native_phonemes),
    (
        "verification.FRAMES",
        verification.FRAMES,
        lambda lang: (lang.clone_prefix, lang.clone_suffix),
    ),
    (
        "checkpoint_report.EVALUATION_TEXTS",
        checkpoint_report.EVALUATION_TEXTS,
        lambda lang: lang.evaluation_text,
    ),
    (
        "decider_shapes.PIPER_TRAINING_BASE_MODELS",
        decider_shapes.PIPER_TRAINING_BASE_MODELS,
        lambda lang: lang.piper_base_checkpoint,
    ),
    (
        'decider_shapes.BASE_MODELS["PiperTrainer"]',
        decider_shapes.BASE_MODELS["PiperTrainer"],
        lambda lang: lang.embedded_base_voice,
    ),
    ("speech._ENGINES", speech._ENGINES, lambda lang: lang.speech_engines),
    ("recognition.DEFAULT_FALLBACKS", recognition.DEFAULT_FALLBACKS, lambda lang: lang.recognisers),
    (
        "recognition.POCKETSPHINX_LANGUAGES",
        recognition.POCKETSPHINX_LANGUAGES,
        lambda lang: recognition.POCKETSPHINX in lang.recognisers,
    ),
    ("grammar._CASE_WORDS", grammar._CASE_WORDS, lambda lang: lang.case_words),
]
FULL = {  # tables every language must have an entry in
    "selection.NATIVE_PHONEMES",
    "verification.FRAMES",
    "checkpoint_report.EVALUATION_TEXTS",
    "decider_shapes.PIPER_TRAINING_BASE_MODELS",
    "speech._ENGINES",
    "recognition.DEFAULT_FALLBACKS",
}


@pytest.mark.parametrize(("name", "table", "pick"), DERIVED, ids=[d[0] for d in DERIVED])
def test_each_table_has_exactly_the_registry_languages(name, table, pick) -> None:
    assert isinstance(table, PerLanguage), f"{name} is not derived from the registry"
    wanted = {code for code, lang in LANGUAGES.items() if pick(lang)}
    assert set(table) == wanted
    assert len(table) == len(wanted)
    assert all(table[code] == pick(LANGUAGES[code]) for code in wanted)
    if name in FULL:
        assert wanted == set(LANGUAGES), f"{name} lacks {sorted(set(LANGUAGES) - wanted)}"


def test_the_tables_hold_what_they_held_before_the_registry() -> None:
    espeak = {code: lang.espeak_voice for code, lang in LANGUAGES.items()}
    assert espeak == {"en": "en-us", "de": "de", "ru": "ru"}
    assert verification.FRAMES["de"] == ("Der Beginn. ", " Das Ende.")
    assert dict(decider_shapes.PIPER_TRAINING_BASE_MODELS) == {
        "en": "lessac",
        "de": "thorsten",
        "ru": "denis",
    }
    assert dict(decider_shapes.BASE_MODELS["PiperTrainer"]) == {"en": "joe"}
    assert dict(speech._ENGINES) == {
        "en": (speech.PIPER, speech.ESPEAK),
        "de": (speech.ESPEAK,),
        "ru": (speech.FESTIVAL, speech.ESPEAK),
    }
    assert list(recognition.POCKETSPHINX_LANGUAGES) == ["en"]
    assert sorted(grammar._CASE_WORDS) == ["de", "ru"]
    sizes = {code: len(phonemes) for code, phonemes in selection.NATIVE_PHONEMES.items()}
    assert sizes == {"en": 59, "de": 47, "ru": 53}
    assert LANGUAGES["de"].script == "LATIN" and LANGUAGES["ru"].script == "CYRILLIC"


def test_every_entry_is_complete() -> None:
    engines = {speech.PIPER, speech.ESPEAK, speech.FESTIVAL}
    recognisers = {recognition.WHISPER, recognition.POCKETSPHINX}
    for code, lang in LANGUAGES.items():
        assert lang.code == code and lang.name and lang.espeak_voice, code
        assert lang.letters == lang.letters.lower() and len(set(lang.letters)) == len(lang.letters)
        assert lang.native_phonemes and lang.evaluation_text and lang.piper_base_checkpoint
        assert lang.clone_prefix.endswith(" ") and lang.clone_suffix.startswith(" "), code
        assert lang.speech_engines and set(lang.speech_engines) <= engines, code
        assert lang.recognisers and set(lang.recognisers) <= recognisers, code
        assert 0 < lang.min_script_share <= 1, code
        assert all(case.isalpha() and case.islower() for case in lang.case_words.values())
        assert bool(lang.case_words) == bool(lang.grammar), code
        assert bool(lang.article_words) == bool(lang.article_question), code
        assert hash(lang) == hash(replace(lang)), code  # sentences.py caches per Language


def test_the_registry_imports_neither_dagster_nor_heavy_libraries() -> None:
    code = (
        "import sys, chara_resources.languages; "
        "print(sorted(m for m in ('dagster', 'torch', 'numpy', 'brainbox') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- no table outside the registry ----------------------------------------------------------


def language_tables(source: str, codes: set[str]) -> list[tuple[int, str]]:
    """(line, what) for every dict keyed by a language code, every tuple/list/set literal that
    holds one, every ``return`` of one and every comparison of a ``language``/``lang``/``code``
    with one."""
    found: list[tuple[int, str]] = []

    def is_code(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value in codes

    def named_language(node: ast.AST) -> bool:
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
        return name in ("language", "lang", "code") or name.endswith("_language")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict) and any(is_code(k) for k in node.keys):
            found.append((node.lineno, "dict keyed by language code"))
        elif isinstance(node, ast.Tuple | ast.List | ast.Set) and any(map(is_code, node.elts)):
            found.append((node.lineno, f"{type(node).__name__.lower()} of language codes"))
        elif isinstance(node, ast.Return) and is_code(node.value):
            found.append((node.lineno, "a language code returned"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(is_code, sides)) and any(map(named_language, sides)):
                found.append((node.lineno, "comparison with a language code"))
    return sorted(found)


def test_the_scan_finds_the_tables_it_is_meant_to_find() -> None:
    old = (
        '_ESPEAK_VOICES = {"en": "en-us", "de": "de", "ru": "ru"}\n'
        'LANGUAGES_WITH_CASES = ("de", "ru")\n'
        'if language == "ru":\n    pass\n'
        'def guess(text):\n    return "de"\n'
        'ok = {"voice": "de"}, ("Vosk", "transcribe"), model == "de"\n'
    )
    assert language_tables(old, set(LANGUAGES)) == [
        (1, "dict keyed by language code"),
        (2, "tuple of language codes"),
        (3, "comparison with a language code"),
        (6, "a language code returned"),
    ]


def test_no_language_table_outside_the_registry() -> None:
    codes = set(LANGUAGES)
    problems = []
    for folder in ("chara_assets", "chara_resources"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == REGISTRY:
                continue
            source = path.read_text(encoding="utf-8")
            if not any(f'"{code}"' in source or f"'{code}'" in source for code in codes):
                continue  # no code spelled out: nothing to parse
            for line, what in language_tables(source, codes):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not problems, "derive these from chara_resources/languages.py:\n" + "\n".join(problems)


# --- adding a language ----------------------------------------------------------------------


ESPERANTO = """\
name = "Esperanto"
espeak_voice = "eo"
letters = "abcĉdefgĝhĥijĵklmnoprsŝtuŭvz"
native_phonemes = ["a e i o u", "b d f ɡ h k l m n p r s t v z ʃ ʒ tʃ dʒ"]
evaluation_text = "Saluton! Mi estas via nova voĉo."
clone_prefix = "La komenco. "
clone_suffix = " La fino."
piper_base_checkpoint = "eo-base"
embedded_base_voice = "eo-voice"
speech_engines = ["espeak-ng"]
recognisers = ["whisper"]
common_words = "la kaj mi estas"
min_script_share = 0.9
grammar = "eo"

[spelling_folds]
"ĥ" = "h"

[case_words]
"akuzativo" = "accusative"
"nominativo" = "nominative"
"""


@pytest.fixture
def esperanto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fourth language registered the way README says: one file, read like the others."""
    (tmp_path / "eo.toml").write_text(ESPERANTO, encoding="utf-8")
    lang = load_language(tmp_path / "eo.toml")
    monkeypatch.setitem(LANGUAGES, "eo", lang)
    return lang


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('name = "Esperanto"\n', ""), "missing 1 required.*'name'"),
        (lambda t: "colour = 1\n" + t, "unknown field 'colour'"),
        (lambda t: t.replace('speech_engines = ["espeak-ng"]', "speech_engines = 3"), "speech_en"),
        (lambda t: t.replace("min_script_share = 0.9", 'min_script_share = "x"'), "min_script"),
        (lambda t: t.replace('"h"', "1"), "spelling_folds must map to strings only"),
        (lambda t: t.replace("[case_words]", "[case_words"), "not a readable TOML file"),
    ],
)
def test_a_broken_entry_is_named_with_its_field(tmp_path: Path, change, message) -> None:
    path = tmp_path / "eo.toml"
    path.write_text(change(ESPERANTO), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_language(path)
    assert "eo.toml" in str(caught.value)


@pytest.mark.parametrize(("name", "table", "pick"), DERIVED, ids=[d[0] for d in DERIVED])
def test_a_new_entry_is_in_every_derived_table(esperanto, name, table, pick) -> None:
    if pick(esperanto):
        assert "eo" in table and table["eo"] == pick(esperanto)
    else:
        assert "eo" not in table


def test_a_new_entry_reaches_the_code_that_uses_the_tables(esperanto) -> None:
    assert verification.frame_line("Bonan tagon.", "eo-EO") == "La komenco. Bonan tagon. La fino."
    assert verification.normalise_words("ĥoro", "eo") == ["horo"]
    assert speech._normalize_language("EO") == "eo"
    assert speech._voice_name(speech.ESPEAK, "eo") == "eo"
    assert guess_language("Mi estas ĉi tie kaj la ĝardeno.") == "eo"
    assert grammar.case_names("eo") == ["accusative", "nominative"]
    assert grammar.parse_case("Akuzativo.", "eo") == "accusative"
    assert grammar.translation_prompt("timer", "a device", "eo").endswith(
        "into Esperanto. Answer with the Esperanto word only, in its dictionary form."
    )
    assert restore.wrong_script([Text("Mi atendas la ĉevalon")], "eo") is None
    assert restore.wrong_script([Text("Я жду")], "eo") == "only 0 of 4 letters are Latin"
    with pytest.raises(ValueError, match="'eo': no grammatron grammar"):
        grammar.grammar_rule("eo", "accusative")
    spec = parse_templates(TIMER.replace("de:", "eo:"), "timer.yaml")[0]  # eo lines are allowed
    question = prompts.case_prompt("Mi atendas {unit}.", Slot("unit"), spec, "eo")
    assert "In the Esperanto sentence" in question and "article" not in question
    german = prompts.case_prompt("Ich warte auf {unit}.", Slot("unit"), TIMER_SPEC, "de")
    assert german.endswith(get_language("de").article_question)


TIMER = """\
templates:
  - name: timer
    variables:
      unit: {type: options, options: [minute, hour], description: the unit}
    lines:
      de: ["Noch {unit}."]
"""
TIMER_SPEC = parse_templates(TIMER, "timer.yaml")[0]


def test_an_unknown_language_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown language 'fr'; known languages: de, en, ru"):
        get_language("fr")
    assert "fr" not in verification.FRAMES
    with pytest.raises(KeyError):
        verification.FRAMES["fr"]
    assert languages.language_code(" en_US ") == "en"
