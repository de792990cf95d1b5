"""A decider that stands in for a GPU model in fault tests: it sleeps, echoes, fails on request
and writes files, so that timing and failures can be produced on demand on a real BrainBox."""

from __future__ import annotations

import time

from brainbox import ISelfManagingDecider


class SleepyEcho(ISelfManagingDecider):
    def echo(self, text: str, sleep_s: float = 0.0) -> str:
        time.sleep(sleep_s)
        if text.startswith("fail"):
            raise ValueError(f"cannot echo {text!r}")
        return text.upper()

    def write(self, text: str, sleep_s: float = 0.0) -> str:
        """Writes ``text`` into a file in the BrainBox cache and returns its name."""
        time.sleep(sleep_s)
        name = f"echo-{self.current_job_id}.txt"
        (self.cache_folder / name).write_text(text.upper())
        return name

    def long(self, steps: int, sleep_s: float) -> dict:
        """A long job that reports progress and log lines, like a training run."""
        for i in range(steps):
            self.context.api_callback.log(f"step {i + 1} of {steps}")
            self.context.api_callback.report_progress((i + 1) / steps)
            time.sleep(sleep_s)
        return {"steps": steps}


class FaultyCloner(ISelfManagingDecider):
    """Stands where a cloner would, for faults a real model cannot produce on demand: by the
    words in the line it returns a corrupt WAV, an empty WAV, silence, noise, or fails; otherwise
    it speaks the line with espeak-ng."""

    def train(self, voice: str, text: str, file: str) -> str:
        return voice

    def voice_to_text(self, voice: str, text: str) -> str:
        import subprocess

        import numpy as np
        import soundfile as sf

        name = f"faulty-{self.current_job_id}.wav"
        path = self.cache_folder / name
        lowered = text.lower()
        if "corrupt" in lowered:
            path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        elif "empty" in lowered:
            sf.write(path, np.zeros(0, dtype=np.float32), 22050)
        elif "silent" in lowered:
            sf.write(path, np.zeros(22050 * 2, dtype=np.float32), 22050)
        elif "noisy" in lowered:  # a valid WAV header over random samples
            noise = np.random.default_rng(len(text)).integers(-30000, 30000, 22050 * 3)
            sf.write(path, noise.astype(np.int16), 22050, subtype="PCM_16")
        elif "refuse" in lowered:
            raise RuntimeError(f"the cloner cannot say {text!r}")
        else:
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
        return name


class EspeakPhonemizer(ISelfManagingDecider):
    """Cheap real work for tests of the job machinery: phonemes from libespeak-ng."""

    def phonemize(self, text: list[str], language: str) -> list[list[list[str]]]:
        from chara_resources.embedded.phonemes import EspeakPhonemes

        voice = {"en": "en-us"}.get(language, language)
        return EspeakPhonemes().phonemize([text] if isinstance(text, str) else list(text), voice)
