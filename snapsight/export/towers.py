"""The torch side of an export: towers as ONNX graphs with a dynamic batch axis.

Uses ``torch.onnx.export``'s TorchScript exporter (``dynamo=False``): it handles open_clip's towers, timm trunks,
Hugging Face CLIP, MiniLM and MPNet at opset 17 without onnxscript, and its graphs load in onnxruntime as they are.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..zeroshot.layer_stats import find_layers, joined_statistics, recording_statistics

DEFAULT_OPSET = 17  # onnxruntime runs it from 1.14 on; LayerNormalization is a single op from 17


class _Call(nn.Module):
    """One method of a model as a module, so each tower exports as its own graph."""

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class ImageWithStats(nn.Module):
    """The image tower with a second output: the familiarity features of ``layers`` (their L2-normalised channel
    statistics, concatenated, as :func:`snapsight.zeroshot.layer_stats.layer_statistics` computes them), taken
    from the same forward pass, so the device computes the "unfamiliar image" flag without a second pass."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        super().__init__()
        self.model = model
        self.layers = tuple(layers)
        find_layers(model, self.layers)  # one sentence now rather than while tracing

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with recording_statistics(self.model, self.layers) as captured:
            emb = self.model.encode_image(x)
        return emb, joined_statistics(captured, self.layers)


def export_graph(module: nn.Module | Callable, example: torch.Tensor, path: Path, input_name: str,
                 output_name: str | Sequence[str], opset: int = DEFAULT_OPSET, owner: nn.Module | None = None) -> Path:
    """Write ``module(example)`` as an ONNX graph at ``path`` with axis 0 of the input and of every output
    (``output_name``: one name, or one per output) dynamic.

    ``module`` may be a bound method (``model.encode_image``); ``owner`` is then the model it belongs to. The
    module is put in eval mode, and left in eval mode: the exporter restores the training flag of the wrapper it
    was handed, so the wrapper itself is set to eval first.
    """
    if not isinstance(module, nn.Module):
        module = _Call(owner, module)
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about code we do not own
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        outputs = [output_name] if isinstance(output_name, str) else list(output_name)
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=outputs,
                          dynamic_axes={input_name: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return path
