"""Throwaway assets that exercise the storage layer, runnable in a subprocess to be killed.

``python -m tests.sample_assets counted|media --home DIR --log FILE [...]`` materializes one
of them for partition ``kiki|en`` in an ephemeral instance.
"""

import argparse
import time
from pathlib import Path

import dagster as dg

from chara_assets.partitions import CHARACTER_DIMENSION, character_language_partitions
from chara_resources.brainbox import BrainBoxResource, RoleBinding
from chara_resources.brainbox_jobs import Job
from chara_resources.folder_asset import FolderManifest
from chara_resources.storage import CharaStorage, FolderIOManager

PARTITION = "kiki|en"


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


class CountedItems(FolderManifest):
    values: list[str]


class CountedConfig(dg.Config):
    items: int = 20
    delay_s: float = 0.0
    offset: int = 0  # affects the "square" step (and, through its result, "label")
    suffix: str = "!"  # affects only the "label" step
    log: str


@dg.asset(partitions_def=character_language_partitions)
def counted_items(
    context: dg.AssetExecutionContext, config: CountedConfig, storage: CharaStorage
) -> dg.MaterializeResult:
    work = storage.work(context)
    square = work.step("square", params={"offset": config.offset})
    label = work.step("label", params={"suffix": config.suffix})
    values = []
    for i in range(config.items):

        def compute_square(files, i=i):
            time.sleep(config.delay_s)
            _log(config.log, f"square {i}")
            return i * i + config.offset

        a = square.get_or_compute({"i": i}, compute_square)

        def compute_label(files, i=i, a=a):
            _log(config.log, f"label {i}")
            files.path(".txt").write_text(f"{a.result}{config.suffix}")
            return f"{a.result}{config.suffix}"

        values.append(label.get_or_compute({"i": i, "square": a.result}, compute_label).result)
    return dg.MaterializeResult(
        value=CountedItems(values=values),
        metadata={"square_computed": square.computed, "label_computed": label.computed},
    )


class MediaFolder(FolderManifest):
    files: list[str]
    version: str


class MediaConfig(dg.Config):
    version: str
    files: int = 3
    fail_after: int = -1  # raise after writing this many files
    delay_s: float = 0.0
    log: str = ""


@dg.asset(partitions_def=character_language_partitions)
def media_folder(
    context: dg.AssetExecutionContext, config: MediaConfig, storage: CharaStorage
) -> MediaFolder:
    folder = storage.staging(context)
    names = []
    for i in range(config.files):
        if i == config.fail_after:
            raise RuntimeError("simulated failure while writing media")
        name = f"clip_{i:03d}.wav"
        (folder / name).write_bytes(f"{config.version}:{i}".encode() * 100)
        names.append(name)
        if config.log:
            _log(config.log, name)
        time.sleep(config.delay_s)
    return MediaFolder(files=names, version=config.version).bind(folder)


@dg.asset(partitions_def=character_language_partitions)
def media_report(media_folder: MediaFolder) -> dg.MaterializeResult:
    sizes = {name: media_folder.path(name).stat().st_size for name in media_folder.files}
    return dg.MaterializeResult(
        value=CountedItems(values=[f"{k}={v}" for k, v in sorted(sizes.items())])
    )


class EchoConfig(dg.Config):
    items: int = 5
    sleep_s: float = 0.0


@dg.asset(partitions_def=character_language_partitions)
def echo_items(
    context: dg.AssetExecutionContext,
    config: EchoConfig,
    brainbox: BrainBoxResource,
    storage: CharaStorage,
) -> dg.MaterializeResult:
    step = storage.work(context).step("echo")
    jobs = [Job({"text": f"item {i}", "sleep_s": config.sleep_s}) for i in range(config.items)]
    outcome = brainbox.run(context, step, "llm", "question", jobs)
    outcome.check(max_failure_ratio=0.0)
    return dg.MaterializeResult(
        value=CountedItems(values=[r.result for r in outcome.records()]),
        metadata={"submitted": outcome.submitted, "reused": outcome.reused},
    )


def echo_brainbox(url: str, retry_for_s: float = 30.0) -> BrainBoxResource:
    """The LLM role played by the fault-test decider."""
    return BrainBoxResource(
        url=url,
        role_profile="embedded",  # a server of chara's own (test) deciders
        retry_for_s=retry_for_s,
        roles={"llm": RoleBinding(decider="SleepyEcho", methods={"question": "echo"})},
    )


def storage_resources(home: Path) -> dict[str, object]:
    storage = CharaStorage(root=str(home))
    return {"storage": storage, "io_manager": FolderIOManager(storage=storage)}


def run(
    asset,
    home: Path,
    config: dg.Config,
    partition: str = PARTITION,
    brainbox: BrainBoxResource | None = None,
    **kwargs,
):
    resources = storage_resources(home)
    if brainbox is not None:
        resources["brainbox"] = brainbox
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CHARACTER_DIMENSION, ["kiki"])
        return dg.materialize(
            [asset],
            instance=instance,
            resources=resources,
            partition_key=partition,
            run_config=dg.RunConfig({asset.key.path[-1]: config}),
            **kwargs,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("asset", choices=["counted", "media", "echo"])
    parser.add_argument("--brainbox", default="")
    parser.add_argument("--home", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--version", default="v2")
    args = parser.parse_args()
    if args.asset == "counted":
        config = CountedConfig(items=args.items, delay_s=args.delay, log=args.log)
        run(counted_items, Path(args.home), config)
    elif args.asset == "echo":
        config = EchoConfig(items=args.items, sleep_s=args.delay)
        run(echo_items, Path(args.home), config, brainbox=echo_brainbox(args.brainbox))
    else:
        config = MediaConfig(
            version=args.version, files=args.items, delay_s=args.delay, log=args.log
        )
        run(media_folder, Path(args.home), config)


if __name__ == "__main__":
    main()
