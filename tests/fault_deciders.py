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
