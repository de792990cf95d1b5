"""The Piper training and export processes that the embedded trainer starts.

    python -m chara_resources.embedded.training_process fit SPEC.json
    python -m chara_resources.embedded.training_process export CHECKPOINT OUTPUT.onnx

``fit`` runs piper-tts's own training (``piper.train``: its LightningCLI, VitsModel and
VitsDataModule) with three changes that let it run on this machine:

- our maximum-path alignment replaces the Cython module the wheel lacks (monotonic_align);
- no metric-monitoring checkpoint callbacks: piper's defaults watch ``val_mos``, whose MOS
  model is fetched from the network at the first validation, and ``val_mel``, which needs a
  validation split; we save a checkpoint every ``checkpoint_epochs`` epochs and at the end,
  weights only (about a third of a full checkpoint with optimizer state), and turn the MOS
  predictor off so nothing is downloaded;
- one JSON event line per epoch on stdout (``chara-event {...}``): epoch, step, losses and
  the checkpoint written, which the decider turns into progress and results.

``export`` writes the ONNX voice with the legacy TorchScript exporter (``dynamo=False``; the
default dynamo exporter of torch 2.13 fails on VITS) and piper's own inference wrapper.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

EVENT = "chara-event "

# Model sizes as Piper's original training named them (piper_train --quality).
QUALITIES: dict[str, dict[str, Any]] = {
    "x_low": {"hidden_channels": 96, "inter_channels": 96, "filter_channels": 384},
    "medium": {},
    "high": {
        "resblock": "1",
        "resblock_kernel_sizes": "(3, 7, 11)",
        "resblock_dilation_sizes": "((1, 3, 5), (1, 3, 5), (1, 3, 5))",
        "upsample_rates": "(8, 8, 2, 2)",
        "upsample_initial_channel": 512,
        "upsample_kernel_sizes": "(16, 16, 4, 4)",
    },
}


def emit(kind: str, **values: Any) -> None:
    print(EVENT + json.dumps({"event": kind, **values}), flush=True)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 5) if math.isfinite(number) else None


def _events_callback(spec: dict[str, Any]):
    from lightning.pytorch.callbacks import Callback

    class ChraEvents(Callback):
        """Progress lines, and a weights-only checkpoint every K epochs and at the end."""

        def __init__(self) -> None:
            self.every = int(spec["checkpoint_epochs"])
            self.epochs = int(spec["epochs"])
            self.folder = Path(spec["checkpoints"])
            self.last_report = 0.0
            self.sums: dict[str, float] = {}
            self.count = 0

        def on_train_start(self, trainer, pl_module) -> None:
            emit(
                "start",
                epochs=self.epochs,
                batches_per_epoch=int(trainer.num_training_batches),
                parameters=sum(p.numel() for p in pl_module.model_g.parameters()),
            )

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.sums, self.count = {}, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            for name, value in trainer.callback_metrics.items():
                if name.startswith(("loss_", "train_")):
                    number = _number(value)
                    if number is not None:
                        self.sums[name] = self.sums.get(name, 0.0) + number
            self.count += 1
            now = time.monotonic()
            if now - self.last_report >= 10:
                self.last_report = now
                total = self.epochs * max(1, trainer.num_training_batches)
                emit(
                    "step",
                    epoch=trainer.current_epoch,
                    step=trainer.global_step,
                    progress=min(
                        1.0,
                        (trainer.current_epoch * trainer.num_training_batches + batch_idx + 1)
                        / total,
                    ),
                )

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            epoch = trainer.current_epoch + 1  # epochs done
            losses = {k: round(v / max(1, self.count), 5) for k, v in self.sums.items()}
            for name, value in trainer.callback_metrics.items():
                if name.startswith("val_"):
                    number = _number(value)
                    if number is not None:
                        losses[name] = number
            checkpoint = None
            if epoch % self.every == 0 or epoch >= self.epochs:
                checkpoint = f"epoch={epoch}-step={trainer.global_step}.ckpt"
                self.folder.mkdir(parents=True, exist_ok=True)
                trainer.save_checkpoint(self.folder / checkpoint, weights_only=True)
            emit(
                "epoch",
                epoch=epoch,
                step=trainer.global_step,
                progress=min(1.0, epoch / self.epochs),
                losses=losses,
                checkpoint=checkpoint,
            )

    return ChraEvents()


def fit(spec: dict[str, Any]) -> None:
    """Train as ``spec`` says (keys: see PiperTrainer.train in training.py)."""
    import logging

    import torch

    from .monotonic_align import install

    install()
    from piper.train.__main__ import VitsLightningCLI
    from piper.train.vits.dataset import VitsDataModule
    from piper.train.vits.lightning import VitsModel

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    torch.manual_seed(int(spec.get("seed", 1234)))
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    quality = QUALITIES[spec["quality"]]
    args = [
        "fit",
        f"--data.csv_path={spec['csv_path']}",
        f"--data.audio_dir={spec['audio_dir']}",
        f"--data.cache_dir={spec['cache_dir']}",
        f"--data.config_path={spec['config_path']}",
        f"--data.voice_name={spec['voice_name']}",
        f"--data.espeak_voice={spec['espeak_voice']}",
        f"--data.batch_size={spec['batch_size']}",
        f"--data.validation_split={spec['validation_split']}",
        "--data.num_test_examples=0",
        "--data.num_workers=0",
        f"--model.sample_rate={spec['sample_rate']}",
        "--model.mos_metric=none",  # its model would be downloaded from the network
        f"--trainer.max_epochs={spec['epochs']}",
        f"--trainer.accelerator={spec.get('accelerator', 'cpu')}",
        "--trainer.devices=1",
        "--trainer.enable_checkpointing=false",  # ours: weights only, every K epochs
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        "--trainer.num_sanity_val_steps=0",
        f"--trainer.default_root_dir={spec['root']}",
    ]
    if float(spec["validation_split"]) <= 0:
        args.append("--trainer.limit_val_batches=0")
    args += [f"--model.{name}={value}" for name, value in quality.items()]
    if spec.get("warmstart"):
        args.append(f"--model.warmstart_ckpt={spec['warmstart']}")
    VitsLightningCLI(
        VitsModel,
        VitsDataModule,
        args=args,
        trainer_defaults={"callbacks": [_events_callback(spec)]},
        save_config_callback=None,
    )
    emit("done")


def export(checkpoint: Path, output: Path) -> None:
    """Write the ONNX voice of a (weights-only or full) checkpoint to ``output``: piper's own
    export (``piper.train.export_onnx``) with the legacy exporter selected."""
    import functools

    import torch

    from .monotonic_align import install

    install()
    from piper.train import export_onnx

    # torch 2.13 defaults to the dynamo exporter, which fails on VITS; the TorchScript one
    # works (it still needs onnxscript installed).
    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    sys.argv = ["export_onnx", "--checkpoint", str(checkpoint), "--output-file", str(output)]
    export_onnx.main()


def _die_with_parent() -> None:
    """Exit when the BrainBox server that started us dies, so no orphan training keeps its
    memory (Linux prctl PR_SET_PDEATHSIG; set here, not in a preexec_fn, which can deadlock
    in the threaded server)."""
    import os
    import signal

    parent = os.environ.get("CHARA_PARENT_PID")
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the server died before prctl took effect
        sys.exit("the BrainBox server that started this training is gone")


def main() -> None:
    _die_with_parent()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "fit" and len(sys.argv) == 3:
        fit(json.loads(Path(sys.argv[2]).read_text()))
    elif command == "export" and len(sys.argv) == 4:
        export(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
