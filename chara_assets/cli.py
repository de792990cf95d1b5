"""The ``chara`` command: check the configuration, run the main job, start the UI."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from chara_resources.settings import PROJECT_ROOT, chara_home, ensure_dagster_home


def _catalog():
    from .definitions import defs

    return defs.resources["characters"].load()


def check(args: argparse.Namespace) -> int:
    """Validate every character, user and template file and every voice file (and, with
    ``--brainbox``, that each BrainBox has the deciders and models the chains need); exit
    status 1 if anything is wrong."""
    from .configuration import check_configuration
    from .definitions import defs

    report = check_configuration(defs.resources["characters"], defs.resources["templates"])
    for error in report.errors:
        print(error, file=sys.stderr)
    print(report.summary())
    failed = not report.ok
    if getattr(args, "brainbox", False):
        catalog = _catalog()
        languages = sorted({lang for c in catalog.characters.values() for lang in c.languages})
        failed |= check_brainbox(languages) > 0
    return 1 if failed else 0


def check_brainbox(languages: list[str]) -> int:
    """Ask every configured BrainBox for the deciders and models of every role; print one line
    per missing one. Returns how many are missing."""
    from chara_resources.brainbox import ROLES, parse_servers
    from chara_resources.brainbox_client import BrainBoxClient, BrainBoxError

    from .definitions import defs

    resource = defs.resources["brainbox"]
    if resource.profile != "production":
        print("BrainBox: chara's embedded deciders (started by chara; nothing to install)")
        return 0
    roles = [r for r in ROLES if r in resource.bindings()]
    needs = resource.needs(roles, languages)
    missing = 0
    for name, url in parse_servers(resource.url).items():
        try:
            with BrainBoxClient(url, retry_for_s=min(resource.retry_for_s, 10.0)) as client:
                problems = resource.preflight(client, needs)
        except BrainBoxError as exc:
            problems = [str(exc)]
        for problem in problems:
            print(problem, file=sys.stderr)
        missing += len(problems)
        what = f"{len(problems)} missing" if problems else "every decider and model there"
        print(f"BrainBox {name} at {url}: {what} ({len(needs)} checked)")
    return missing


def run(args: argparse.Namespace) -> int:
    """The main job, in the persistent instance (results visible in ``chara dev`` afterwards):
    ``language_job`` (sentence pool and its phonemes) for every language the characters speak,
    then ``character_job`` and ``corpus_job`` for every character|language."""
    ensure_dagster_home()
    import dagster as dg

    from chara_resources.embedded.launcher import EmbeddedBrainBox

    from .definitions import defs
    from .partitions import CHARACTER_DIMENSION, CharacterLanguage

    catalog = _catalog()
    for error in catalog.errors:
        print(f"warning: {error}", file=sys.stderr)
    names = args.character or sorted(catalog.characters)
    unknown = [n for n in names if n not in catalog.characters]
    if unknown:
        print(f"error: no valid character file for {', '.join(unknown)}", file=sys.stderr)
        return 2
    pairs = [
        CharacterLanguage(name, language)
        for name in names
        for language in catalog.characters[name].languages
        if not args.language or language in args.language
    ]
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(CHARACTER_DIMENSION, names)
    logging = {"loggers": {"console": {"config": {"log_level": args.log_level}}}}
    embedded = EmbeddedBrainBox(chara_home() / "brainbox")
    was_running = embedded.running_url() is not None
    failures = 0

    def execute(job_name: str, partition_key: str) -> None:
        nonlocal failures
        started = time.monotonic()
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False, run_config=logging
        )
        failures += not result.success
        status = "ok" if result.success else "FAILED"
        print(f"{job_name} {partition_key}: {status} in {time.monotonic() - started:.1f} s")

    try:
        for language in sorted({pair.language for pair in pairs}):
            execute("language_job", language)
        for pair in pairs:
            execute("character_job", str(pair.key))
            execute("corpus_job", str(pair.key))
    finally:
        if not was_running and not os.environ.get("CHARA_BRAINBOX_URL"):
            embedded.stop()  # started for this command: do not leave it behind
    print(f"storage: {chara_home()}  dagster instance: {os.environ['DAGSTER_HOME']}")
    return 1 if failures else 0


def demo(args: argparse.Namespace) -> int:
    """The quick start's main job: every chain at demo size for one character|language (see
    ``chara_assets/demo.py``), in the persistent instance; prints where the reports are."""
    ensure_dagster_home()
    import dagster as dg

    from chara_resources.embedded.launcher import EmbeddedBrainBox

    from .definitions import defs
    from .demo import JOBS, PARAPHRASE_JOB, DemoSize, run_configs
    from .partitions import CHARACTER_DIMENSION, CharacterLanguage

    catalog = _catalog()
    character = catalog.characters.get(args.character)
    if character is None:
        print(f"error: no valid character file for {args.character!r}", file=sys.stderr)
        return 2
    language = args.language or character.languages[0]
    if language not in character.languages:
        print(
            f"error: {args.character} does not speak {language!r} "
            f"(languages: {', '.join(character.languages)})",
            file=sys.stderr,
        )
        return 2
    if args.lines < 1 or args.epochs < 1:
        print("error: --lines and --epochs must be at least 1", file=sys.stderr)
        return 2
    size = DemoSize(lines=args.lines, epochs=args.epochs)
    if args.template:
        size = DemoSize(lines=args.lines, epochs=args.epochs, templates=tuple(args.template))
    configs = run_configs(size, language)
    pair = str(CharacterLanguage(args.character, language).key)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(CHARACTER_DIMENSION, [args.character])
    logging = {"loggers": {"console": {"config": {"log_level": args.log_level}}}}
    embedded = EmbeddedBrainBox(chara_home() / "brainbox")
    was_running = embedded.running_url() is not None
    reports: list[tuple[str, str]] = []
    jobs = [*JOBS] + ([] if args.no_paraphrase else [PARAPHRASE_JOB])
    started_all = time.monotonic()
    try:
        for job_name in jobs:
            started = time.monotonic()
            partition = language if job_name == "language_job" else pair
            result = defs.resolve_job_def(job_name).execute_in_process(
                instance=instance,
                partition_key=partition,
                raise_on_error=False,
                run_config={**configs.get(job_name, {}), **logging},
            )
            status = "ok" if result.success else "FAILED"
            print(f"{job_name} {partition}: {status} in {time.monotonic() - started:.1f} s")
            for event in result.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                report = materialization.metadata.get("report")
                if isinstance(report, dg.PathMetadataValue):
                    reports.append((materialization.asset_key.to_user_string(), report.path))
            if not result.success:
                print(
                    "the demo stopped here; the run's log is in the UI (chara dev) under Runs",
                    file=sys.stderr,
                )
                return 1
    finally:
        if not was_running and not os.environ.get("CHARA_BRAINBOX_URL"):
            embedded.stop()  # started for this command: do not leave it behind
    print(f"demo finished in {time.monotonic() - started_all:.0f} s")
    for asset, path in reports:
        print(f"report of {asset}: {path}")
    print(f"storage: {chara_home()}  dagster instance: {os.environ['DAGSTER_HOME']}")
    return 0


def dev(args: argparse.Namespace) -> int:
    """Start ``dagster dev`` on the project's workspace with the persistent instance."""
    ensure_dagster_home()
    os.chdir(PROJECT_ROOT)
    # The dagster next to this interpreter: works without an activated virtual environment.
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    command = [dagster, "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)]
    os.execvp(command[0], command)
    return 0  # not reached


def brainbox(args: argparse.Namespace) -> int:
    """Status of the embedded BrainBox (the server chara starts when no URL is configured)."""
    from chara_resources.embedded.launcher import EmbeddedBrainBox

    box = EmbeddedBrainBox(chara_home() / "brainbox")
    if args.action == "stop":
        print("stopped" if box.stop() else "not running")
    elif args.action == "start":
        url = box.ensure_running(log=lambda note: print(f"note: {note}", file=sys.stderr))
        print(f"running at {url}")
    else:
        url = box.running_url()
        print(f"running at {url} (pid {box.state().pid})" if url else "not running")
        print(f"data and log: {box.folder}")
    return 0


def review(args: argparse.Namespace) -> int:
    """Start the annotation service on the character's latest text_corpus (its own process)."""
    from chara_resources.paths import UnsafeNameError, check_slug
    from chara_resources.storage import CharaStorage, load_manifest

    from .voice.corpus_assets import TextCorpus, text_corpus
    from .voice.review import review_folder, write_review_task

    try:
        character = check_slug(args.character, "character name")
        language = check_slug(args.language, "language")
    except UnsafeNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    corpus_folder = CharaStorage().asset_folder(text_corpus.key, [character, language])
    if not (corpus_folder / "manifest.json").exists():
        print(
            f"error: no text_corpus for {args.character}|{args.language} in {chara_home()}; "
            "materialize it first",
            file=sys.stderr,
        )
        return 2
    corpus = load_manifest(corpus_folder, TextCorpus)
    folder = review_folder(chara_home(), args.character, args.language)
    task = write_review_task(
        folder, args.character, args.language, corpus.sentences, dagster_url=args.dagster
    )
    command = [sys.executable, "-m", "chara_assets.annotation", str(task)]
    command += ["--host", args.host, "--port", str(args.port)]
    print(f"reviewing {len(corpus.sentences)} sentences: http://{args.host}:{args.port}")
    os.execv(command[0], command)
    return 0  # not reached


def identify(args: argparse.Namespace) -> int:
    """Start the annotation service on the latest embedding_sets of a modality, with the
    active-learning strategy (its own process)."""
    from chara_resources.storage import CharaStorage, load_manifest

    from .identification.assets import embedding_sets
    from .identification.engine import EmbeddingSet
    from .identification.media import get_modality
    from .identification.planning import write_task_for

    try:
        modality = get_modality(args.modality)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder = CharaStorage().asset_folder(embedding_sets.key, [modality.name])
    if not (folder / "manifest.json").exists():
        print(
            f"error: no embedding_sets for {modality.name} in {chara_home()}; materialize "
            "avatar_media and embedding_sets first",
            file=sys.stderr,
        )
        return 2
    embedding_set = load_manifest(folder, EmbeddingSet)
    try:
        task = write_task_for(
            embedding_set, chara_home(), refine=args.refine, dagster_url=args.dagster or None
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "chara_assets.annotation", str(task)]
    command += ["--host", args.host, "--port", str(args.port)]
    command += ["--next-sample", "chara_assets.identification.planning:next_sample"]
    mode = "refining the labelled set of" if args.refine else "labelling"
    print(
        f"{mode} {len(embedding_set.samples)} {modality.name} samples: "
        f"http://{args.host}:{args.port}",
        flush=True,
    )
    os.execv(command[0], command)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chara", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check_parser = commands.add_parser(
        "check", help="validate character, user, template and voice files"
    )
    check_parser.add_argument(
        "--brainbox",
        action="store_true",
        help="also ask each BrainBox (CHARA_BRAINBOX_URL) for the deciders and models needed",
    )
    check_parser.set_defaults(func=check)
    run_parser = commands.add_parser("run", help="run the main job for configured characters")
    run_parser.add_argument("--character", action="append", help="only this character")
    run_parser.add_argument("--language", action="append", help="only this language")
    run_parser.add_argument("--log-level", default="INFO", help="Dagster console log level")
    run_parser.set_defaults(func=run)
    demo_parser = commands.add_parser(
        "demo", help="every chain at demo size for one character (the quick start)"
    )
    demo_parser.add_argument("--character", default="kiki")
    demo_parser.add_argument("--language", help="default: the character's first language")
    demo_parser.add_argument("--lines", type=int, default=16, help="sentences to voice")
    demo_parser.add_argument("--epochs", type=int, default=1, help="Piper training epochs")
    demo_parser.add_argument(
        "--template", action="append", help="paraphrase this template (default: two of them)"
    )
    demo_parser.add_argument("--no-paraphrase", action="store_true", help="skip paraphrasing")
    demo_parser.add_argument("--log-level", default="WARNING", help="Dagster console log level")
    demo_parser.set_defaults(func=demo)
    dev_parser = commands.add_parser("dev", help="start the Dagster UI")
    dev_parser.add_argument("--host", default="127.0.0.1")
    dev_parser.add_argument("--port", type=int, default=3000)
    dev_parser.set_defaults(func=dev)
    review_parser = commands.add_parser("review", help="review a character's sentences")
    review_parser.add_argument("character")
    review_parser.add_argument("language")
    review_parser.add_argument("--host", default="127.0.0.1")
    review_parser.add_argument("--port", type=int, default=7860)
    review_parser.add_argument(
        "--dagster", default="http://127.0.0.1:3000", help="webserver that FINISH reports to"
    )
    review_parser.set_defaults(func=review)
    identify_parser = commands.add_parser(
        "identify", help="label who speaks (voice) or who is seen (face) in Avatar's samples"
    )
    identify_parser.add_argument("modality", help="voice or face")
    identify_parser.add_argument(
        "--refine", action="store_true", help="re-label the existing dataset (adds DELETE)"
    )
    identify_parser.add_argument("--host", default="127.0.0.1")
    identify_parser.add_argument("--port", type=int, default=7860)
    identify_parser.add_argument(
        "--dagster", default="http://127.0.0.1:3000", help="webserver that FINISH reports to"
    )
    identify_parser.set_defaults(func=identify)
    box_parser = commands.add_parser("brainbox", help="the embedded BrainBox server")
    box_parser.add_argument(
        "action", nargs="?", choices=["status", "start", "stop"], default="status"
    )
    box_parser.set_defaults(func=brainbox)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
