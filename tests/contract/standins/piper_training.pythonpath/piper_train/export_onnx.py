"""``python3 -m piper_train.export_onnx CKPT ONNX``: piper1-gpl's exporter, as chara's embedded
trainer runs it (see the package docstring)."""

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(prog="piper_train.export_onnx")
    parser.add_argument("checkpoint", type=Path, help="Path to model checkpoint (.ckpt)")
    parser.add_argument("output", type=Path, help="Path to output model (.onnx)")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no such checkpoint")

    from chara_resources.embedded.training_process import export

    export(args.checkpoint, args.output)
    if not args.output.is_file():
        sys.exit(f"the export of {args.checkpoint} wrote no {args.output}")
    print(f"Exported {args.checkpoint} to {args.output} ({args.output.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
