"""Run the real kaia-brainbox server on a loopback port with chara's CPU deciders.

    python -m chara_resources.embedded.server --port 8091 --data DIR [--decider module:Class]...

Bound to 127.0.0.1 only: the server has no authentication and its file endpoints accept any
path, so it must not be reachable from the network.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path


def load_decider(spec: str):
    """Instantiate a decider from ``"package.module:ClassName"``."""
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise ValueError(f"decider {spec!r} must look like 'package.module:ClassName'")
    return getattr(importlib.import_module(module_name), class_name)()


def serve(port: int, folder: Path, deciders: list[str]) -> None:
    serve_controllers(port, folder, [load_decider(spec) for spec in deciders])


def serve_controllers(port: int, folder: Path, controllers: list, on_registry=None) -> None:
    """kaia's BrainBox server on 127.0.0.1:``port`` with ``controllers`` (deciders, or kaia's
    controllers/entry points), data in ``folder``; ``on_registry`` sees the registry first."""
    from brainbox.framework import (
        BrainBoxLocations,
        BrainBoxServer,
        BrainBoxServerSettings,
        ControllerRegistry,
        SimplePlanner,
    )

    folder.mkdir(parents=True, exist_ok=True)
    registry = ControllerRegistry(controllers, resources_folder=folder / "resources")
    if on_registry is not None:
        on_registry(registry)
    settings = BrainBoxServerSettings(
        registry=registry,
        locations=BrainBoxLocations.default(folder),
        planner=SimplePlanner(),
        port=port,
    )
    entry = BrainBoxServer(settings).create_web_app_entry_point()
    entry.host = "127.0.0.1"
    entry.run()


def main() -> None:
    from .deciders import DEFAULT_DECIDERS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--decider", action="append", help="module:Class (repeatable)")
    args = parser.parse_args()
    serve(args.port, args.data, args.decider or DEFAULT_DECIDERS)


if __name__ == "__main__":
    main()
