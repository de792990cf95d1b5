"""Stand-in for rhasspy's ``piper_train`` in the contract BrainBox's PiperTraining container.

kaia's PiperTraining container app (``brainbox/deciders/voice_generation/piper_training/app``)
runs the old rhasspy training package on a GPU; neither is here. This package takes its place on
the container's PYTHONPATH with the same three entry points and the argument lists kaia's
``training.py`` and ``service.py`` pass, and does the work on the CPU with piper1-gpl's own
training code, as chara's embedded trainer runs it (chara_resources/embedded/training_process.py,
warm-started from an exported voice by training_warmstart.py). Everything around it is kaia's.

``python3 -m piper_train.preprocess --language L --input-dir D --output-dir O --dataset-format
ljspeech --single-speaker --sample-rate R``
    Reads ``D/metadata.csv`` (``id|text``) and ``D/wav/<id>`` (or ``<id>.wav``); runs piper1-gpl's
    preparation (espeak-ng phonemes for voice ``L``, audio resampled to R and trimmed, spectrograms)
    into ``O/cache/``; writes ``O/config.json`` (the Piper voice config, what piper-tts loads next
    to the ONNX) and ``O/standin-dataset.json`` (where the clips are, for the train step).
    Multi-speaker datasets and other formats are refused.

``python3 -m piper_train --dataset-dir O --accelerator A --devices 1 --batch-size B
--validation-split V --num-test-examples N --max_epochs E --resume_from_checkpoint BASE
--checkpoint-epochs K --precision 32 [--keep-intermediate]``
    BASE is not a Lightning checkpoint here but a small JSON file naming the real starting point::

        {"warm_start": "joe", "epoch": 2164, "step": 1355540}

    ``warm_start``: ``joe`` (the packaged English voice, medium quality, as in chara's embedded
    trainer) or the absolute path of an exported medium Piper voice (``.onnx``); ``epoch`` and
    ``step``: what the real base checkpoint had done (lessac: 2164 and 1355540), so that epochs and
    steps count on from there as a resumed Lightning training does. Trains ``E - epoch`` epochs of
    the medium model on the CPU with one thread (the accelerator asked for is reported, not used),
    prints a line per epoch, and writes ``O/lightning_logs/version_<n>/checkpoints/
    epoch=<base epoch + epochs done>-step=<base step + steps>.ckpt`` every K epochs of this
    training. Without ``--keep-intermediate`` only the newest checkpoint stays, as the real
    ``ModelCheckpoint(every_n_epochs=K)`` (save_top_k 1) keeps it; with it, all of them.
    Checkpoints hold weights only (no optimizer state).

``python3 -m piper_train.export_onnx CKPT ONNX``
    Writes the ONNX voice of a checkpoint with piper1-gpl's exporter; kaia's service then copies
    ``O/config.json`` next to it and tars both.
"""
