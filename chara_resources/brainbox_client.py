"""HTTP client of a BrainBox server (kaia-brainbox 5.x), with retries that name the server.

No Dagster here: the resource in ``brainbox.py`` wraps it. Protocol: docs/kaia-5.2-servers.md
(*HTTP API (BrainBox)*, *Job execution model*, *Cancellation*).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from .http import RetryingClient, ServerError, ServerUnavailable


class BrainBoxError(ServerError):
    """The BrainBox server answered with an error."""


class BrainBoxUnavailable(BrainBoxError, ServerUnavailable):
    """The BrainBox server could not be reached within the retry time."""


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
        locate: Callable[[], str | None] | None = None,
    ) -> None:
        """``locate``: where the server is now (the embedded BrainBox's ``server.json``), asked
        before each retry of an unreachable server."""
        self._transport = RetryingClient(
            "BrainBox",
            url,
            retry_for_s=retry_for_s,
            request_timeout_s=request_timeout_s,
            on_retry=on_retry,
            hint=" Is the server running? (CHARA_BRAINBOX_URL chooses it; unset, chara "
            "starts an embedded one)",
            errors=(BrainBoxError, BrainBoxUnavailable),
            locate=locate,
        )
        self._http = self._transport.http

    @property
    def url(self) -> str:
        return self._transport.url

    @property
    def retry_for_s(self) -> float:
        return self._transport.retry_for_s

    @retry_for_s.setter
    def retry_for_s(self, value: float) -> None:
        self._transport.retry_for_s = value

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> BrainBoxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        return self._transport.call(what, send)

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
        return self._transport.download(f"downloading {name}", f"/cache/open/{_quote(name)}", dst)

    def delete(self, name: str) -> None:
        self._call(f"deleting {name}", lambda: self._http.post(f"/cache/delete/{_quote(name)}"))

    # --- what the server has ---------------------------------------------------------------

    def controllers_status(self) -> dict[str, Any]:
        """kaia's ``controllers-service/status``: every decider, installed or not."""
        return self._json("asking for its deciders", "GET", "/controllers-service/status")

    def read_resource(self, path: str) -> str | None:
        """The text of ``path`` under the server's resources folder; None if there is none."""
        quoted = urllib.parse.quote(path, safe="/")
        if not self._json(f"looking up {path}", "POST", f"/resources/is-file/{quoted}"):
            return None
        response = self._call(
            f"reading {path}", lambda: self._http.get(f"/resources/open/{quoted}")
        )
        return response.text
