"""HTTP client of a BrainBox server (kaia-brainbox 5.x), with retries that name the server.

No Dagster here: the resource in ``brainbox.py`` wraps it. Protocol: ../shared/DESIGN.md §4.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from .paths import temporary_sibling

# Connection failures and these statuses mean "the server is not there right now": retried
# until ``retry_for_s`` runs out. A 500 is the server's own error (BrainBox answers every
# failure with 500 and a traceback): retried only briefly.
_UNAVAILABLE_STATUSES = {502, 503, 504}
_SERVER_ERROR_ATTEMPTS = 3


class BrainBoxError(RuntimeError):
    """The BrainBox server answered with an error."""


class BrainBoxUnavailable(BrainBoxError):
    """The BrainBox server could not be reached within the retry time."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "(empty response)"


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class BrainBoxClient:
    """One BrainBox server. Every call retries connection errors with exponential back-off."""

    def __init__(
        self,
        url: str,
        *,
        retry_for_s: float = 120.0,
        request_timeout_s: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry_for_s = retry_for_s
        self._http = httpx.Client(base_url=self.url, timeout=request_timeout_s)
        self._on_retry = on_retry
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrainBoxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------

    def _call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        deadline = time.monotonic() + self.retry_for_s
        wait = 0.25
        server_errors = 0
        while True:
            try:
                response = send()
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code == 500:
                    server_errors += 1
                    if server_errors >= _SERVER_ERROR_ATTEMPTS:
                        raise BrainBoxError(
                            f"BrainBox at {self.url}: {what} failed: {_last_line(response.text)}"
                        )
                    problem = f"HTTP 500: {_last_line(response.text)}"
                elif response.status_code in _UNAVAILABLE_STATUSES:
                    problem = f"HTTP {response.status_code}"
                else:
                    raise BrainBoxError(
                        f"BrainBox at {self.url}: {what} failed with HTTP "
                        f"{response.status_code}: {_last_line(response.text)}"
                    )
            if time.monotonic() + wait > deadline:
                raise BrainBoxUnavailable(
                    f"BrainBox at {self.url} is not reachable ({what}; last problem: {problem}); "
                    f"gave up after {self.retry_for_s:.0f} s. Is the server running? "
                    "(CHARA_BRAINBOX_URL chooses it; unset, chara starts an embedded one)"
                )
            if self._on_retry:
                self._on_retry(f"BrainBox at {self.url}: {problem}; retrying in {wait:.1f} s")
            self._sleep(wait)
            wait = min(wait * 2, 10.0)

    def _json(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(what, lambda: self._http.request(method, path, **kwargs))
        return response.json()

    # --- jobs --------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        self._call("heartbeat", lambda: self._http.get("/heartbeat"))

    def add_jobs(self, jobs: list[dict[str, Any]]) -> list[str]:
        """Submit jobs in one call; each needs ``decider``, ``arguments`` and should carry an
        ``id`` chosen by the caller (so a lost answer can be checked, not resubmitted)."""
        return self._json("adding jobs", "POST", "/jobs-service/base-add", json={"jobs": jobs})

    def batch_progress(self, batch: str) -> dict[str, Any]:
        return self._json(
            f"progress of batch {batch}",
            "GET",
            f"/batches-service/get-batch-progress/{_quote(batch)}",
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(f"job {job_id}", "GET", f"/jobs-service/get-job/{_quote(job_id)}")

    def job_summary(self, job_id: str) -> dict[str, Any]:
        return self._json(f"job {job_id}", "GET", f"/jobs-service/get-job-summary/{_quote(job_id)}")

    def job_summaries(self, ids: list[str]) -> list[dict[str, Any]]:
        return self._json(
            "job summaries", "POST", "/jobs-service/get-job-summaries", json={"ids": ids}
        )

    def known_jobs(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Summaries of those ``ids`` the server knows (unknown ids are left out)."""
        ids = list(ids)
        if not ids:
            return {}
        try:
            return {s["id"]: s for s in self.job_summaries(ids)}
        except BrainBoxError as exc:
            if isinstance(exc, BrainBoxUnavailable):
                raise
        known = {}  # some id is unknown and fails the whole call: ask one by one
        for job_id in ids:
            try:
                known[job_id] = self.job_summary(job_id)
            except BrainBoxUnavailable:
                raise
            except BrainBoxError:
                continue
        return known

    def iter_jobs(self, ids: list[str], chunk: int = 200) -> Iterator[dict[str, Any]]:
        """Full job records (result, error, log) streamed from ``get-jobs`` NDJSON, in order.

        Requests go in chunks so no response is unbounded; a stream broken mid-way is
        re-requested from the first job not yet yielded.
        """
        position = 0
        while position < len(ids):
            part = ids[position : position + chunk]

            def send(part: list[str] = part) -> httpx.Response:
                request = self._http.build_request(
                    "POST", "/jobs-service/get-jobs", json={"ids": part}
                )
                return self._http.send(request, stream=True)

            response = self._call("reading job results", send)
            try:
                for line in response.iter_lines():
                    if line.strip():
                        yield json.loads(line)
                        position += 1
            except httpx.TransportError:
                continue  # retried from `position` on the next loop
            finally:
                response.close()

    def cancel_batch(self, batch: str) -> None:
        self._call(
            f"cancelling batch {batch}",
            lambda: self._http.post(f"/batches-service/cancel-batch/{_quote(batch)}"),
        )

    def cancel_job(self, job_id: str) -> None:
        self._call(
            f"cancelling job {job_id}",
            lambda: self._http.post(f"/jobs-service/cancel-job/{_quote(job_id)}"),
        )

    # --- files in the BrainBox cache ---------------------------------------------------------

    def upload(self, name: str, path: Path) -> None:
        """Upload a file into the BrainBox cache under ``name`` (streamed from disk)."""

        def send() -> httpx.Response:
            with open(path, "rb") as f:
                return self._http.post(f"/cache/upload/{_quote(name)}", content=f)

        self._call(f"uploading {path.name}", send)

    def is_file(self, name: str) -> bool:
        return bool(self._json(f"looking up {name}", "POST", f"/cache/is-file/{_quote(name)}"))

    def download(self, name: str, dst: Path) -> Path:
        """Stream a cache file to ``dst`` (written atomically)."""

        def send() -> httpx.Response:
            request = self._http.build_request("GET", f"/cache/open/{_quote(name)}")
            return self._http.send(request, stream=True)

        response = self._call(f"downloading {name}", send)
        try:
            with temporary_sibling(dst) as tmp, open(tmp, "wb") as f:
                for block in response.iter_bytes(1 << 16):
                    f.write(block)
        finally:
            response.close()
        return dst

    def delete(self, name: str) -> None:
        self._call(f"deleting {name}", lambda: self._http.post(f"/cache/delete/{_quote(name)}"))
