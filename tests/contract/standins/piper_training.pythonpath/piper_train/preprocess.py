"""``python3 -m piper_train.preprocess``: piper1-gpl's data preparation (see the package)."""

import argparse
import csv
import json
import sys
from pathlib import Path

DATASET_FILE = "standin-dataset.json"


def read_metadata(input_dir: Path) -> list[tuple[str, str]]:
    """The ``(id, text)`` rows of an LJSpeech ``metadata.csv`` whose clip is in ``wav/`` (as
    ``<id>`` or ``<id>.wav``: kaia's ids keep the extension)."""
    metadata = input_dir / "metadata.csv"
    if not metadata.is_file():
        raise ValueError(f"{metadata}: no metadata.csv in the input folder")
    rows = []
    with open(metadata, encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f, delimiter="|"), start=1):
            if len(row) != 2:
                raise ValueError(
                    f"{metadata} line {number}: expected 'id|text' (a single speaker), got "
                    f"{len(row)} fields"
                )
            clip, text = row
            wav = input_dir / "wav"
            if not ((wav / clip).is_file() or (wav / f"{clip}.wav").is_file()):
                raise ValueError(f"{metadata} line {number}: no audio wav/{clip}(.wav)")
            if not text.strip():
                raise ValueError(f"{metadata} line {number}: clip {clip!r} has no text")
            rows.append((clip, text))
    if not rows:
        raise ValueError(f"{metadata}: no clips")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="piper_train.preprocess")
    parser.add_argument("--language", required=True, help="espeak-ng voice, e.g. en-us")
    parser.add_argument("--input-dir", required=True, type=Path)
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--dataset-format", required=True)
    parser.add_argument("--single-speaker", action="store_true")
    parser.add_argument("--sample-rate", required=True, type=int)
    args = parser.parse_args()
    if args.dataset_format != "ljspeech":
        sys.exit(f"--dataset-format {args.dataset_format!r}: this stand-in reads ljspeech only")
    if not args.single_speaker:
        sys.exit("this stand-in prepares single-speaker datasets only (--single-speaker)")
    try:
        rows = read_metadata(args.input_dir)
    except ValueError as exc:
        sys.exit(str(exc))

    import logging

    from piper.train.vits.dataset import VitsDataModule

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    dataset = {
        "csv_path": str(args.input_dir / "metadata.csv"),
        "audio_dir": str(args.input_dir / "wav"),
        "cache_dir": str(output / "cache"),
        "espeak_voice": args.language,
        "sample_rate": args.sample_rate,
        "voice_name": output.parent.name or "voice",
        "clips": len(rows),
    }
    VitsDataModule(
        csv_path=dataset["csv_path"],
        audio_dir=dataset["audio_dir"],
        cache_dir=dataset["cache_dir"],
        config_path=output / "config.json",
        espeak_voice=args.language,
        voice_name=dataset["voice_name"],
        sample_rate=args.sample_rate,
    ).prepare_data()
    (output / DATASET_FILE).write_text(json.dumps(dataset, indent=1), encoding="utf-8")
    print(f"Preprocessed {len(rows)} utterance(s) for espeak voice {args.language!r} into {output}")


if __name__ == "__main__":
    main()
