"""An httpx client that retries while a server is away, with errors that name the server."""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .paths import temporary_sibling

# Connection failures and these statuses mean "the server is not there right now": retried
# until ``retry_for_s`` runs out. A 500 is the server's own error (kaia servers answer every
# failure with 500 and a traceback): retried only briefly.
_UNAVAILABLE_STATUSES = {502, 503, 504}
_SERVER_ERROR_ATTEMPTS = 3


class ServerError(RuntimeError):
    """The server answered with an error."""


class ServerUnavailable(ServerError):
    """The server could not be reached within the retry time."""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One CA bundle for all clients: loading it takes ~0.3 s and clients are made per call."""
    return httpx.create_ssl_context()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "(empty response)"


class RetryingClient:
    """``call(what, send)`` runs ``send`` until it answers, retrying with exponential back-off.

    ``locate``, if given, says where the server is now (or None if unknown); it is asked
    before every retry of an unreachable server, so that a server restarted elsewhere (the
    embedded BrainBox on a new port) is found again within ``retry_for_s``.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        retry_for_s: float,
        request_timeout_s: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        hint: str = "",
        errors: tuple[type[ServerError], type[ServerUnavailable]] = (
            ServerError,
            ServerUnavailable,
        ),
        locate: Callable[[], str | None] | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.retry_for_s = retry_for_s
        self.http = httpx.Client(base_url=self.url, timeout=request_timeout_s, verify=tls_context())
        self._on_retry = on_retry
        self._sleep = sleep
        self._hint = hint
        self._error, self._unavailable = errors
        self._locate = locate

    def _switch(self, url: str | None) -> bool:
        """Go to ``url`` (where ``locate`` says the server is); True if that is a new place."""
        if not url or url.rstrip("/") == self.url:
            return False
        if self._on_retry:
            self._on_retry(f"{self.name} moved from {self.url} to {url.rstrip('/')}")
        self.url = url.rstrip("/")
        self.http.base_url = self.url
        return True

    def close(self) -> None:
        self.http.close()

    def call(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
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
                if response.is_stream_consumed is False:
                    response.read()
                located = self._locate() if self._locate is not None else self.url
                if self._switch(located):
                    continue  # another program answers where the server was
                if located is None:  # stopped, says server.json: whoever answers is not it
                    problem = f"HTTP {response.status_code} from another program there"
                elif response.status_code == 500:
                    server_errors += 1
                    if server_errors >= _SERVER_ERROR_ATTEMPTS:
                        raise self._error(
                            f"{self.name} at {self.url}: {what} failed: {last_line(response.text)}"
                        )
                    problem = f"HTTP 500: {last_line(response.text)}"
                elif response.status_code in _UNAVAILABLE_STATUSES:
                    problem = f"HTTP {response.status_code}"
                else:
                    raise self._error(
                        f"{self.name} at {self.url}: {what} failed with HTTP "
                        f"{response.status_code}: {last_line(response.text)}"
                    )
            if self._locate is not None and self._switch(self._locate()):
                continue  # at once: the server is up somewhere else
            if time.monotonic() + wait > deadline:
                raise self._unavailable(
                    f"{self.name} at {self.url} is not reachable ({what}; last problem: "
                    f"{problem}); gave up after {self.retry_for_s:.0f} s.{self._hint}"
                )
            if self._on_retry:
                self._on_retry(f"{self.name} at {self.url}: {problem}; retrying in {wait:.1f} s")
            self._sleep(wait)
            wait = min(wait * 2, 10.0)

    def download(self, what: str, path: str, dst: Path) -> Path:
        """Stream ``GET path`` into ``dst`` (written atomically: no half file on failure)."""

        def send() -> httpx.Response:
            return self.http.send(self.http.build_request("GET", path), stream=True)

        response = self.call(what, send)
        try:
            with temporary_sibling(dst) as tmp, open(tmp, "wb") as f:
                for block in response.iter_bytes(1 << 16):
                    f.write(block)
        finally:
            response.close()
        return dst
