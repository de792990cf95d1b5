"""How long ``sentence_pool`` takes per language on the Debian corpora.

    .venv/bin/python bench/sentence_pool.py [--language en --language de ...]

Each language's pool is materialized as chara builds it (the asset, on a throwaway storage
root), in a fresh process per language, so that the time includes loading its dictionary once.
Target: 45 s or less per language, dictionary included.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 45.0
ONE = """
import sys
import dagster as dg
from chara_assets.voice.corpus_assets import sentence_pool
from chara_resources.storage import CharaStorage, FolderIOManager
storage = CharaStorage(root=sys.argv[2])
result = dg.materialize(
    [sentence_pool],
    partition_key=sys.argv[1],
    resources={"storage": storage, "io_manager": FolderIOManager(storage=storage)},
)
metadata = result.asset_materializations_for_node("sentence_pool")[0].metadata
print(metadata["sentences"].value)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--language", action="append", choices=["en", "de", "ru"])
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    worst = 0.0
    for language in args.language or ["en", "de", "ru"]:
        with tempfile.TemporaryDirectory() as home:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", ONE, language, home],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.perf_counter() - started
        worst = max(worst, seconds)
        kept = done.stdout.strip().splitlines()[-1]
        print(f"{language}: {kept} sentences kept, {seconds:.1f} s (process start included)")
    verdict = "met" if worst <= TARGET_S else "MISSED"
    print(f"slowest {worst:.1f} s; target {TARGET_S:.0f} s {verdict}")


if __name__ == "__main__":
    main()
