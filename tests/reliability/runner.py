"""Materialize one asset partition in this process, to be killed, restarted or raced by a test.

python -m tests.reliability.runner ASSET PARTITION --home DIR --characters DIR --users DIR
    [--templates DIR] [--brainbox URL] [--avatar URL] [--config JSON] [--tag KEY=VALUE]
    [--instance DAGSTER_HOME]

The assets are chara's own (``chara_assets.definitions``); upstream partitions are read from
the storage root. Without ``--brainbox``, the embedded BrainBox of the storage root
(``<home>/brainbox``). Without ``--instance``, an ephemeral Dagster instance; with it, the
persistent instance in that folder, as ``chara run`` executes in process on ``DAGSTER_HOME``.
Exits 0 if the run succeeded, 1 if it failed (the failure is printed).
"""

import argparse
import json
import sys

import dagster as dg


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("asset")
    parser.add_argument("partition")
    parser.add_argument("--home", required=True)
    parser.add_argument("--characters", required=True)
    parser.add_argument("--users", required=True)
    parser.add_argument("--templates", default="")
    parser.add_argument("--brainbox", default="")
    parser.add_argument("--avatar", default="")
    parser.add_argument("--config", default="{}", help="run config of the asset, as JSON")
    parser.add_argument("--tag", action="append", default=[], help="run tag KEY=VALUE")
    parser.add_argument("--instance", default="", help="DAGSTER_HOME of a persistent instance")
    args = parser.parse_args()

    from chara_assets.characters.resource import CharacterCatalog
    from chara_assets.definitions import defs
    from chara_assets.paraphrase.resource import TemplateFolder
    from chara_resources.avatar import AvatarResource
    from chara_resources.brainbox import BrainBoxResource
    from chara_resources.storage import CharaStorage, FolderIOManager

    storage = CharaStorage(root=args.home)
    resources = {
        "storage": storage,
        "io_manager": FolderIOManager(storage=storage),
        "characters": CharacterCatalog(characters_dir=args.characters, users_dir=args.users),
        "brainbox": BrainBoxResource(
            url=args.brainbox,
            role_profile="embedded",
            retry_for_s=60,
            embedded_folder="" if args.brainbox else f"{args.home}/brainbox",
        ),
        # Without a URL, the local Avatar folder under this storage root.
        "avatar": AvatarResource(
            url=args.avatar,
            local_folder="" if args.avatar else f"{args.home}/avatar",
            trusted=True,
            retry_for_s=3,
        ),
        "templates": TemplateFolder(templates_dir=args.templates)
        if args.templates
        else TemplateFolder(),
    }
    tags = dict(tag.split("=", 1) for tag in args.tag)
    opened = (
        dg.DagsterInstance.from_config(args.instance)
        if args.instance
        else dg.DagsterInstance.ephemeral()
    )
    with opened as instance:
        instance.add_dynamic_partitions("character", ["kiki", "boris"])
        result = dg.materialize(
            list(defs.assets),
            selection=[args.asset],
            instance=instance,
            resources=resources,
            partition_key=args.partition,
            run_config={"ops": {args.asset: {"config": json.loads(args.config)}}}
            if args.config != "{}"
            else None,
            tags=tags,
            raise_on_error=False,
        )
    if not result.success:
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            while error is not None:
                print(f"FAILED: {error.message}", flush=True)
                error = error.cause
        return 1
    print("SUCCESS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
