"""The paraphrase chain for one partition on the embedded BrainBox and a local Avatar folder:
outcomes, accepted paraphrases, and the time per LLM answer. Run by hand:

    .venv/bin/python bench/paraphrase_chain.py --partition boris|ru --templates timer_done goodbye

Everything goes to a temporary storage root (its BrainBox is started and stopped here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partition", default="kiki|en")
    parser.add_argument("--templates", nargs="*", default=["goodbye"])
    parser.add_argument("--attempts", type=int, default=1)
    parser.add_argument("--per-answer", type=int, default=3)
    parser.add_argument("--votes", type=int, default=3)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="chara-bench-paraphrase-"))
    os.environ["CHARA_HOME"] = str(home)
    import dagster as dg

    from chara_assets.characters.resource import CharacterCatalog
    from chara_assets.paraphrase.assets import (
        ParaphraseSetsConfig,
        avatar_paraphrase_stats,
        avatar_paraphrases,
        paraphrase_sets,
    )
    from chara_assets.paraphrase.resource import TemplateFolder
    from chara_resources.avatar import AvatarResource
    from chara_resources.brainbox import BrainBoxResource
    from chara_resources.embedded.launcher import EmbeddedBrainBox
    from chara_resources.storage import CharaStorage, FolderIOManager, load_manifest

    box = EmbeddedBrainBox(home / "brainbox", ["chara_resources.embedded.deciders:LlamaCpp"])
    url = box.ensure_running()
    storage = CharaStorage(root=str(home))
    resources = {
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        "characters": CharacterCatalog(),
        "templates": TemplateFolder(),
        "avatar": AvatarResource(local_folder=str(home / "avatar")),
        "brainbox": BrainBoxResource(url=url, role_profile="embedded", log_every_s=10),
    }
    character = args.partition.split("|")[0]
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("character", [character])
            config = ParaphraseSetsConfig(
                templates=args.templates,
                max_attempts=args.attempts,
                paraphrases_per_answer=args.per_answer,
                case_votes=args.votes,
            )
            started = time.monotonic()
            result = dg.materialize(
                [avatar_paraphrase_stats, paraphrase_sets, avatar_paraphrases],
                instance=instance,
                resources=resources,
                partition_key=args.partition,
                run_config=dg.RunConfig({"paraphrase_sets": config}),
            )
            elapsed = time.monotonic() - started
        assert result.success
        folder = home / "assets" / "paraphrase_sets" / Path(*args.partition.split("|"))
        sets = load_manifest(folder)
        metadata = result.asset_materializations_for_node("paraphrase_sets")[0].metadata
        jobs = metadata["llm_jobs"].value
        print(f"{args.partition}: {elapsed:.0f} s for the chain, {jobs} paraphrase answers")
        for outcome in sets.outcomes:
            print(f"  {outcome.template} [{outcome.variables_tag or '-'}]: {outcome.outcome}, "
                  f"{outcome.reason}; {outcome.reasons}")  # fmt: skip
        for line in sets.paraphrases:
            print(f"  + {line.text}   {line.grammar or ''}")
        for reason, texts in sets.rejected_examples.items():
            print(f"  - {reason}: {texts[0]!r}")
    finally:
        box.stop()


if __name__ == "__main__":
    main()
