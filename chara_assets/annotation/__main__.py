"""``python -m chara_assets.annotation TASK_JSON [--port N] [--host H] [--log PATH]``.

Starts the annotation service for a task file; the log defaults to the file next to it
(``review.json`` -> ``review.annotations.jsonl``). Runs until the process is stopped; the log
is complete at every moment, so stopping it (even with SIGKILL) loses no decision.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from .log import NextSample, first_undecided


def load_strategy(spec: str | None) -> NextSample:
    """``"package.module:function"`` -> that function; None -> :func:`first_undecided`.

    Errors: ``ValueError`` for a spec without ``:``, ``ImportError``/``AttributeError`` when
    the module or function does not exist.
    """
    if not spec:
        return first_undecided
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"--next-sample must look like 'package.module:function', not {spec!r}")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve (blocks). Errors: argparse exits with status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m chara_assets.annotation",
        description="Serve the annotation UI and API for a task file.",
    )
    parser.add_argument("task", type=Path, help="the task JSON file")
    parser.add_argument("--port", type=int, default=None, help="default: Gradio's (7860 up)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: loopback only)"
    )
    parser.add_argument("--log", type=Path, default=None, help="default: next to the task")
    parser.add_argument(
        "--next-sample",
        default=None,
        metavar="MODULE:FUNCTION",
        help="strategy that picks the next sample (default: the first undecided one)",
    )
    args = parser.parse_args(argv)
    strategy = load_strategy(args.next_sample)
    from .app import serve  # Gradio loads only once the arguments are fine

    serve(args.task, log_path=args.log, host=args.host, port=args.port, next_sample=strategy)


if __name__ == "__main__":
    main()
