"""How long one tick of the character sensor takes with many character files.

    .venv/bin/python bench/sensor_scan.py [--files 1000]

Dagster cancels a sensor tick after 60 s. The first tick adds every character (a partition
and one run request per language); the second finds nothing new.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from chara_assets.characters.resource import CharacterCatalog
from chara_assets.definitions import defs
from chara_resources.settings import PROJECT_ROOT


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    sensor = defs.get_repository_def().get_sensor_def("character_files")
    template = (PROJECT_ROOT / "characters" / "kiki.yaml").read_text()
    with tempfile.TemporaryDirectory() as tmp, dg.DagsterInstance.ephemeral() as instance:
        folder = Path(tmp) / "characters"
        shutil.copytree(PROJECT_ROOT / "characters" / "voices", folder / "voices")
        for i in range(args.files):
            (folder / f"character-{i:05d}.yaml").write_text(template)
        resources = {"characters": CharacterCatalog(characters_dir=str(folder), users_dir=tmp)}
        cursor = None
        for tick in ("first (all new)", "second (no change)"):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            started = time.perf_counter()
            result = sensor(context)
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            elapsed = time.perf_counter() - started
            cursor = result.cursor
            print(
                f"{args.files} files, {tick} tick: {elapsed:.2f} s, "
                f"{len(result.run_requests or [])} run requests, cursor {len(cursor)} bytes"
            )


if __name__ == "__main__":
    main()
