"""The English voice chain end to end on the embedded BrainBox: acceptance rate, rejection
reasons, and what chara's side costs per clip next to the BrainBox job time.

    .venv/bin/python bench/voice_chain.py [--lines 40] [--character kiki] [--language en]
        [--json out.json]

Starts its own embedded BrainBox (every default decider, real models) in a temporary folder,
then materializes, one asset at a time on an ephemeral Dagster instance: the sentence pool and
its phonemes, the text corpus (``--lines`` sentences, accepted automatically), the voice
sample, augmented lines, the cloner voice, the cloned audio, the trimmed clips and the Piper
archive. For each asset it reports the wall time, the BrainBox jobs it ran and their busy time
(``finished - accepted`` from the server's own job table; the embedded server runs one job at a
time, so this is the time the models worked), and the rest — chara's client side (Dagster
step, uploads, polling, downloads, the work cache, verification and cutting, reports) — per
clip. Run it on a quiet machine: other processes inflate every figure.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _server_jobs(db: Path, since: str) -> tuple[int, float, Counter]:
    """Jobs received after ``since`` (server clock, ISO): count, busy seconds, per method."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select method, accepted_timestamp, finished_timestamp from brain_box_jobs "
            "where received_timestamp >= ?",
            (since,),
        ).fetchall()
    busy, methods = 0.0, Counter()
    for method, accepted, finished in rows:
        methods[method] += 1
        if accepted and finished:
            spent = datetime.fromisoformat(finished) - datetime.fromisoformat(accepted)
            busy += spent.total_seconds()
    return len(rows), busy, methods


def _server_now(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        last = conn.execute("select max(last_update_timestamp) from brain_box_jobs").fetchone()[0]
    # The server writes naive local timestamps; anything after the last update is new.
    return last or "0000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=40)
    parser.add_argument("--character", default="kiki")
    parser.add_argument("--language", default="en")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import dagster as dg

    from chara_assets.characters.resource import CharacterCatalog
    from chara_assets.partitions import CHARACTER_DIMENSION
    from chara_assets.voice.assets import voice_sample
    from chara_assets.voice.audio_assets import augmented_lines, cloned_audio, cloner_voice
    from chara_assets.voice.clip_assets import piper_archive, trimmed_clips
    from chara_assets.voice.corpus_assets import (
        ReviewedCorpusConfig,
        TextCorpusConfig,
        pool_phonemes,
        reviewed_corpus,
        sentence_pool,
        text_corpus,
    )
    from chara_resources.brainbox import BrainBoxResource
    from chara_resources.embedded.deciders import DEFAULT_DECIDERS
    from chara_resources.embedded.launcher import EmbeddedBrainBox
    from chara_resources.storage import CharaStorage, FolderIOManager, load_manifest

    assets = [
        voice_sample,
        sentence_pool,
        pool_phonemes,
        text_corpus,
        reviewed_corpus,
        augmented_lines,
        cloner_voice,
        cloned_audio,
        trimmed_clips,
        piper_archive,
    ]
    pair = f"{args.character}|{args.language}"
    steps = [
        (sentence_pool, args.language, {}),
        (pool_phonemes, args.language, {}),
        (text_corpus, pair, {"text_corpus": TextCorpusConfig(target=args.lines)}),
        (reviewed_corpus, pair, {"reviewed_corpus": ReviewedCorpusConfig(auto_accept=True)}),
        (voice_sample, pair, {}),
        (augmented_lines, pair, {}),
        (cloner_voice, pair, {}),
        (cloned_audio, pair, {}),
        (trimmed_clips, pair, {}),
        (piper_archive, pair, {}),
    ]
    with tempfile.TemporaryDirectory(prefix="chara-bench-chain-") as tmp:
        home = Path(tmp) / "home"
        box = EmbeddedBrainBox(Path(tmp) / "brainbox", list(DEFAULT_DECIDERS))
        started = time.perf_counter()
        url = box.ensure_running()
        print(f"BrainBox up in {time.perf_counter() - started:.1f} s at {url}")
        db = box.folder / "data" / "brainbox.db"
        storage = CharaStorage(root=str(home))
        resources = {
            "storage": storage,
            "io_manager": FolderIOManager(storage=storage),
            "characters": CharacterCatalog(
                characters_dir=str(ROOT / "characters"), users_dir=str(ROOT / "users")
            ),
            "brainbox": BrainBoxResource(url=url, role_profile="embedded"),
        }
        rows = []
        try:
            with dg.DagsterInstance.ephemeral() as instance:
                instance.add_dynamic_partitions(CHARACTER_DIMENSION, [args.character])
                for asset, partition, config in steps:
                    since = _server_now(db) if db.exists() else "0000"
                    started = time.perf_counter()
                    dg.materialize(
                        assets,
                        selection=[asset],
                        instance=instance,
                        resources=resources,
                        partition_key=partition,
                        run_config=dg.RunConfig(config),
                    )
                    wall = time.perf_counter() - started
                    jobs, busy, methods = (
                        _server_jobs(db, since) if db.exists() else (0, 0.0, Counter())
                    )
                    name = asset.key.to_user_string()
                    rows.append(
                        {
                            "asset": name,
                            "wall_s": round(wall, 2),
                            "jobs": jobs,
                            "job_s": round(busy, 2),
                            "methods": dict(methods),
                        }
                    )
                    print(f"{name:>16}: {wall:7.1f} s wall, {jobs:4d} jobs, {busy:7.1f} s busy")
        finally:
            box.stop()

        folder = home / "assets" / "trimmed_clips" / args.character / args.language
        trimmed = load_manifest(folder)
        augmented = home / "assets" / "augmented_lines" / args.character / args.language
        lines = len(load_manifest(augmented).lines)
        passed = len({c.id for c in trimmed.clips})
        reasons = Counter(r.reason for r in trimmed.rejections)
        final = {
            r.id: r.reason for r in trimmed.rejections if r.id not in {c.id for c in trimmed.clips}
        }
        failed_lines = sorted(
            {
                r.id: (r.line, r.details.get("kept_text"))
                for r in trimmed.rejections
                if r.id in final
            }.values()
        )
        clips = max(1, lines)
        chain = [
            r for r in rows if r["asset"] in ("cloned_audio", "trimmed_clips", "piper_archive")
        ]
        wall = sum(r["wall_s"] for r in chain)
        busy = sum(r["job_s"] for r in chain)
        summary = {
            "lines": lines,
            "passed": passed,
            "pass_rate": round(passed / clips, 3),
            "hours": round(trimmed.hours, 4),
            "rejections_by_reason": dict(reasons),
            "lines_failed": [{"line": a, "heard": b} for a, b in failed_lines],
            "audio_chain_wall_s": round(wall, 1),
            "audio_chain_job_s": round(busy, 1),
            "client_overhead_ms_per_line": round(1000 * (wall - busy) / clips, 1),
            "job_ms_per_line": round(1000 * busy / clips, 1),
            "steps": rows,
        }
        print(json.dumps({k: v for k, v in summary.items() if k != "steps"}, indent=1))
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
