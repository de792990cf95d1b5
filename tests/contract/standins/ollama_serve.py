#!/usr/bin/env python3
"""A stand-in for the ``ollama`` binary: Ollama's HTTP API, answered by chara's embedded LLM.

kaia's Ollama container app (``app/main.py``) starts ``/bin/ollama serve`` and talks to it on
127.0.0.1:11434 (``/`` until it answers, then ``/api/chat`` and ``/api/generate``). The real
server runs GGUF models with llama.cpp on a GPU; this program, mapped to ``/bin/ollama`` by
``ollama.files.json``, serves the same endpoints and runs the model with chara's ``LocalLLM``
(llama-cpp-python on the CPU, chara_resources/embedded/llm.py):

* ``GET /`` -> ``Ollama is running``; ``GET /api/version``;
* ``GET /api/tags``: the models it has, i.e. the manifests under
  ``$OLLAMA_MODELS`` (default ``$HOME/.ollama/models``)``/manifests/<registry>/<namespace>/
  <model>/<tag>``, as Ollama keeps them;
* ``POST /api/show``, ``/api/chat``, ``/api/generate`` for one of them. The model that answers is
  the GGUF blob its manifest's model layer names (``blobs/sha256-<digest>``), exactly as Ollama
  finds it; :func:`install_model` installs chara's packaged SmolLM2-135M under any model name.
  A model without a manifest gets Ollama's 404 ``{"error":"model \\"x\\" not found, try pulling
  it first"}``.

What it cannot do is refused with a 400 naming it: images, ``format`` (constrained output),
``raw`` prompts, and chats other than system messages followed by one user message (chara's and
kaia's calls are all of that shape). Of ``options`` it uses ``temperature``, ``seed``,
``num_predict``, ``num_ctx`` and ``repeat_penalty``; the others are accepted and ignored.

``ollama serve`` listens on ``$OLLAMA_HOST`` (default 127.0.0.1:11434) and fails, as Ollama does,
when the port is taken; it ends with the process that started it, as it would with its
container. ``ollama list`` prints the models; ``ollama pull`` fails (nothing can be
downloaded here). Other commands are refused.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1:11434"
REGISTRY = "registry.ollama.ai"
MODEL_LAYER = "application/vnd.ollama.image.model"
VERSION = "0.0.0-chara-contract-standin"
DEFAULT_TEMPERATURE = 0.8  # Ollama's
DEFAULT_NUM_CTX = 2048


class StandInError(Exception):
    """An answer with an HTTP status and Ollama's ``{"error": ...}`` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- models on disk, as Ollama keeps them ------------------------------------------------------


def models_folder() -> Path:
    """Where Ollama keeps its models: ``$OLLAMA_MODELS``, else ``$HOME/.ollama/models``."""
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


def manifest_parts(name: str) -> tuple[str, str, str, str]:
    """(registry, namespace, model, tag) of a model name: ``llama3.2`` is
    ``registry.ollama.ai/library/llama3.2:latest``; ``me/m:1`` has namespace ``me``."""
    name = name.strip()
    path, tag = name, "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = name.rsplit(":", 1)
    parts = path.split("/")
    if len(parts) == 1:
        parts = [REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [REGISTRY, *parts]
    if len(parts) != 3 or not all(parts) or not tag or any(p in (".", "..") for p in parts):
        raise StandInError(400, f"invalid model name {name!r}")
    return parts[0], parts[1], parts[2], tag


def display_name(registry: str, namespace: str, model: str, tag: str) -> str:
    """The name ``ollama list`` shows: the registry and ``library/`` left out where default."""
    if registry == REGISTRY and namespace == "library":
        return f"{model}:{tag}"
    if registry == REGISTRY:
        return f"{namespace}/{model}:{tag}"
    return f"{registry}/{namespace}/{model}:{tag}"


def manifest_path(models: Path, name: str) -> Path:
    return models / "manifests" / Path(*manifest_parts(name))


def blob_path(models: Path, digest: str) -> Path:
    return models / "blobs" / digest.replace(":", "-")


def find_model(models: Path, name: str) -> dict[str, Any]:
    """The installed model ``name``: its manifest, config and GGUF file. 404 as Ollama if the
    manifest is missing; 500 naming the file if the manifest or a blob is broken."""
    path = manifest_path(models, name)
    if not path.is_file():
        raise StandInError(404, f'model "{name}" not found, try pulling it first')
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
        layer = next(x for x in manifest["layers"] if x["mediaType"] == MODEL_LAYER)
        gguf = blob_path(models, layer["digest"])
        config = json.loads(blob_path(models, manifest["config"]["digest"]).read_text())
    except (ValueError, KeyError, StopIteration, OSError) as exc:
        raise StandInError(500, f"the manifest {path} or its blobs are broken: {exc!r}") from exc
    if not gguf.is_file():
        raise StandInError(500, f"the model layer of {name!r} is missing: {gguf}")
    return {
        "name": display_name(*manifest_parts(name)),
        "manifest": manifest,
        "digest": hashlib.sha256(raw).hexdigest(),
        "modified_at": _iso(path.stat().st_mtime),
        "size": sum(int(x.get("size", 0)) for x in manifest["layers"]),
        "config": config,
        "gguf": gguf,
    }


def installed_models(models: Path) -> list[dict[str, Any]]:
    root = models / "manifests"
    found = []
    for path in sorted(root.glob("*/*/*/*")) if root.is_dir() else []:
        registry, namespace, model, tag = path.relative_to(root).parts
        try:
            found.append(find_model(models, display_name(registry, namespace, model, tag)))
        except StandInError:
            continue  # a broken model is left out of the list, as Ollama does
    return found


def _details(model: dict[str, Any]) -> dict[str, Any]:
    config = model["config"]
    return {
        "parent_model": "",
        "format": config.get("model_format", "gguf"),
        "family": config.get("model_family", ""),
        "families": config.get("model_families", []),
        "parameter_size": config.get("model_type", ""),
        "quantization_level": config.get("file_type", ""),
    }


def _iso(timestamp: float | None = None) -> str:
    moment = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), UTC)
    return moment.isoformat().replace("+00:00", "Z")


# --- installing a model (for tests) ------------------------------------------------------------


def install_model(server, name: str, gguf: Path | None = None) -> Path:
    """Install ``gguf`` (default: chara's packaged SmolLM2-135M-Instruct) as Ollama model ``name``
    in a contract server's Ollama resources (``resources/Ollama/main`` is the container's
    ``~/.ollama``): the GGUF as a blob, a config blob and the manifest, laid out as ``ollama
    pull`` leaves them, and the model's line in ``installation.yaml`` as kaia's install records
    it. ``server`` is a ``ContractBrainBox``. Returns the manifest's path."""
    from chara_resources.embedded.llm import packaged_model_path

    source = Path(gguf) if gguf is not None else packaged_model_path()
    models = server.resources("Ollama") / "main" / "models"
    digest, size = _store_blob(models, source)
    config = {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": "135M" if gguf is None else "",
        "file_type": "Q4_1" if gguf is None else "",
        "architecture": "amd64",
        "os": "linux",
        "chara": f"contract stand-in: {source.name} installed as {name}",
    }
    config_bytes = json.dumps(config).encode()
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    config_blob = blob_path(models, config_digest)
    config_blob.parent.mkdir(parents=True, exist_ok=True)
    config_blob.write_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [{"mediaType": MODEL_LAYER, "digest": digest, "size": size}],
    }
    path = manifest_path(models, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    server.record_installed("Ollama", {name: name})
    return path


def _store_blob(models: Path, source: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    digest = f"sha256:{sha.hexdigest()}"
    target = blob_path(models, digest)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}-partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    return digest, source.stat().st_size


# --- answering -----------------------------------------------------------------------------------


class Answerer:
    """Runs the models' GGUF files with chara's LocalLLM, one loaded model per file."""

    def __init__(self, models: Path) -> None:
        self.models = models
        self._llms: dict[tuple[Path, int, float], Any] = {}
        self._lock = threading.Lock()

    def _llm(self, gguf: Path, n_ctx: int, repeat_penalty: float | None):
        """A LocalLLM per (file, context, penalty); LocalLLM shares the loaded model itself."""
        from chara_resources.embedded.llm import DEFAULT_REPEAT_PENALTY, LocalLLM

        penalty = DEFAULT_REPEAT_PENALTY if repeat_penalty is None else float(repeat_penalty)
        key = (gguf, n_ctx, penalty)
        with self._lock:
            if key not in self._llms:
                self._llms[key] = LocalLLM(gguf, n_ctx=n_ctx, repeat_penalty=penalty)
            return self._llms[key]

    def answer(self, body: dict[str, Any], system: str | None, prompt: str) -> dict[str, Any]:
        """Run one question; the fields Ollama adds to every answer, with the text."""
        started = time.monotonic_ns()
        model = find_model(self.models, _model_name(body))
        for refused in ("format", "images"):
            if body.get(refused):
                raise StandInError(400, f"chara's Ollama stand-in cannot take {refused!r}")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise StandInError(400, "options must be an object")
        llm = self._llm(
            model["gguf"],
            int(options.get("num_ctx") or DEFAULT_NUM_CTX),
            options.get("repeat_penalty"),
        )
        loading = time.monotonic_ns()
        llm.llama  # noqa: B018 - loads the model now, so its time is told apart
        loaded = time.monotonic_ns()
        num_predict = options.get("num_predict")
        max_tokens = int(num_predict) if num_predict is not None and int(num_predict) > 0 else None
        temperature = options.get("temperature")
        text = llm.question(
            prompt,
            system,
            max_tokens=max_tokens,
            temperature=DEFAULT_TEMPERATURE if temperature is None else float(temperature),
            seed=options.get("seed"),
        )
        tokens = len(llm.llama.tokenize(text.encode(), add_bos=False)) if text else 0
        done_reason = "length" if max_tokens is not None and tokens >= max_tokens else "stop"
        return {
            "model": model["name"],
            "created_at": _iso(),
            "text": text,
            "done_reason": done_reason,
            "done": True,
            "total_duration": time.monotonic_ns() - started,
            "load_duration": loaded - loading,
            "eval_count": tokens,
        }

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        _model_name(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise StandInError(400, "messages must be a non-empty list")
        roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
        if roles[-1] != "user" or any(r != "system" for r in roles[:-1]):
            raise StandInError(
                400,
                "chara's Ollama stand-in answers system messages followed by one user "
                f"message, not the roles {roles}",
            )
        if any(m.get("images") for m in messages):
            raise StandInError(400, "chara's Ollama stand-in cannot take 'images'")
        system = "\n\n".join(str(m.get("content", "")) for m in messages[:-1]) or None
        answer = self.answer(body, system, str(messages[-1].get("content", "")))
        text = answer.pop("text")
        head = {"model": answer.pop("model"), "created_at": answer.pop("created_at")}
        return {**head, "message": {"role": "assistant", "content": text}, **answer}

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("raw"):
            raise StandInError(400, "chara's Ollama stand-in cannot take raw prompts")
        prompt = body.get("prompt") or ""
        if not prompt:  # Ollama: an empty prompt only loads the model
            model = find_model(self.models, _model_name(body))
            head = {"model": model["name"], "created_at": _iso()}
            return {**head, "response": "", "done": True, "done_reason": "load"}
        answer = self.answer(body, body.get("system") or None, str(prompt))
        text = answer.pop("text")
        head = {"model": answer.pop("model"), "created_at": answer.pop("created_at")}
        return {**head, "response": text, **answer}


def _model_name(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise StandInError(400, "model is required")
    return name


# --- the HTTP server -----------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-chara-standin"
    answerer: Answerer  # set by serve()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[stand-in ollama] {self.address_string()} {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, _compact(value), "application/json; charset=utf-8")

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path == "/":
            self._text(200, "Ollama is running")
        elif self.path == "/api/version":
            self._json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            models = installed_models(self.answerer.models)
            entries = [
                {
                    "name": m["name"],
                    "model": m["name"],
                    "modified_at": m["modified_at"],
                    "size": m["size"],
                    "digest": m["digest"],
                    "details": _details(m),
                }
                for m in models
            ]
            self._json(200, {"models": entries})
        else:
            self._text(404, "404 page not found")

    def do_POST(self) -> None:
        routes = {
            "/api/chat": self.answerer.chat,
            "/api/generate": self.answerer.generate,
            "/api/show": self._show,
        }
        route = routes.get(self.path)
        if route is None:
            self._text(404, "404 page not found")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError as exc:
                raise StandInError(400, f"invalid JSON body: {exc}") from exc
            if not isinstance(body, dict):
                raise StandInError(400, "the body must be a JSON object")
            answer = route(body)
        except StandInError as exc:
            self._json(exc.status, {"error": str(exc)})
            return
        except Exception as exc:  # a fault of the stand-in: answered like Ollama's 500s
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        streamed = body.get("stream", True) is not False and answer.get("done_reason") != "load"
        if self.path != "/api/show" and streamed:  # Ollama answers a load in one piece
            self._stream(answer)
        else:
            self._json(200, answer)

    def _stream(self, answer: dict[str, Any]) -> None:
        """Ollama's default: newline-delimited chunks; here the text in one, then the last."""
        key = "message" if "message" in answer else "response"
        head = {k: answer[k] for k in ("model", "created_at")}
        empty = {"role": "assistant", "content": ""} if key == "message" else ""
        lines = [{**head, key: answer[key], "done": False}, {**answer, key: empty}]
        body = b"".join(_compact(line) + b"\n" for line in lines)
        self._send(200, body, "application/x-ndjson")

    def _show(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _model_name(body)
        try:
            model = find_model(self.answerer.models, name)
        except StandInError as exc:
            if exc.status == 404:
                raise StandInError(404, f"model '{name}' not found") from exc
            raise
        return {
            "modelfile": f"# chara's Ollama stand-in\nFROM {model['gguf']}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": _details(model),
            "model_info": {"general.architecture": model["config"].get("model_family", "")},
            "capabilities": ["completion"],
            "modified_at": model["modified_at"],
        }


def _compact(value: Any) -> bytes:
    """JSON as Ollama (Go) writes it: no spaces, non-ASCII as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _end_with_parent() -> None:
    """Stop when the process that started ``ollama serve`` ends, as the server ends with its
    container: the contract harness runs a container's processes without a PID namespace, so
    when kaia's app dies (e.g. its port was taken) nothing else would stop this one and it
    would keep port 11434. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent ended before the request took effect
        sys.exit(1)


def serve() -> int:
    _end_with_parent()
    host = os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
    host = host.split("://", 1)[-1].rstrip("/")
    address, _, port = host.rpartition(":")
    address = address or "127.0.0.1"
    models = models_folder()
    Handler.answerer = Answerer(models)
    try:
        server = ThreadingHTTPServer((address, int(port or 11434)), Handler)
    except OSError as exc:
        print(f"Error: listen tcp {address}:{port}: bind: {exc.strerror}", file=sys.stderr)
        print(
            "(chara's Ollama stand-in: the port is fixed, as kaia's controller publishes it; "
            "stop what holds it)",
            file=sys.stderr,
        )
        return 1
    print(
        f"chara's Ollama stand-in listening on {address}:{port}, models in {models} "
        f"({len(installed_models(models))} installed)",
        file=sys.stderr,
        flush=True,
    )
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "serve":
        return serve()
    if command == "list":
        for model in installed_models(models_folder()):
            print(
                f"{model['name']}\t{model['digest'][:12]}\t{model['size']}\t{model['modified_at']}"
            )
        return 0
    if command == "pull":
        print(
            "Error: chara's Ollama stand-in cannot pull models (nothing can be downloaded here); "
            "install one with install_model() in tests/contract/standins/ollama_serve.py",
            file=sys.stderr,
        )
        return 1
    print(f"Error: `ollama {command}` is not available in chara's Ollama stand-in", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
