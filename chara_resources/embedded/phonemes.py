"""Phonemes from espeak-ng's library (libespeak-ng, Debian package ``espeak-ng``).

The command line tool splits clauses onto separate output lines, which loses the sentence
boundaries of a batch; the library is called once per sentence instead, in process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading

_TEXT_UTF8 = 1
_PHONEMES_IPA = 0x02
_SEPARATOR = "_"
_STRESS = str.maketrans("", "", "ˈˌ")
# espeak marks a word it speaks with another language's rules as "(en)...(de)".
_LANGUAGE_SWITCH = re.compile(r"\(([a-z]{2,3}(?:-[a-z0-9]+)?)\)")


class PhonemizerError(RuntimeError):
    pass


class EspeakPhonemes:
    """IPA phonemes without stress marks: per sentence, per word, a list of phonemes.

    A word that espeak voices with another language's rules starts with a ``(xx)`` token
    (e.g. ``(en)`` for "Timer" in German): a foreign word, which callers usually reject.
    """

    _lock = threading.Lock()  # libespeak-ng keeps global state

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.CDLL(name)
        except OSError as exc:
            raise PhonemizerError(
                f"cannot load libespeak-ng ({exc}); install the Debian package espeak-ng"
            ) from None
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        # 0x02: synchronous output (nothing is played); 0x8000: never call exit() on errors.
        if self._lib.espeak_Initialize(0x02, 0, None, 0x8000) < 0:
            raise PhonemizerError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self._voice: str | None = None

    def _set_voice(self, voice: str) -> None:
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise PhonemizerError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def sentence(self, text: str, voice: str) -> list[list[str]]:
        """Phonemes of one sentence, word by word."""
        with self._lock:
            self._set_voice(voice)
            buffer = ctypes.create_string_buffer(text.encode("utf-8"))
            pointer = ctypes.c_char_p(ctypes.addressof(buffer))
            mode = _PHONEMES_IPA | (ord(_SEPARATOR) << 8)
            clauses = []
            while pointer.value:
                out = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _TEXT_UTF8, mode)
                if out:
                    clauses.append(out.decode("utf-8"))
        words = []
        for token in " ".join(clauses).translate(_STRESS).split():
            token = _LANGUAGE_SWITCH.sub(lambda m: f"_({m.group(1)})_", token)
            phonemes = [p for p in token.split(_SEPARATOR) if p]
            if phonemes:
                words.append(phonemes)
        return words

    def phonemize(self, texts: list[str], voice: str) -> list[list[list[str]]]:
        return [self.sentence(text, voice) for text in texts]
