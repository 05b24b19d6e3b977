"""int8 graphs with onnxruntime's quantizer.

Image towers (what runs for every image): ``dynamic`` (MatMul/Gemm weights int8 per channel, activations quantized
per call) or ``static`` QDQ (every op int8, activation ranges calibrated on images). Measured on this project's
2-core AVX-512 CPU (docs/ondevice.md): dynamic never quantizes convolutions, because onnxruntime's ConvInteger ran
the default model's ResNet tower 5x slower than fp32, while static QDQ ran it as fast or faster at a quarter of the
size; transformers (ViT) gain from dynamic.

Text towers run only when a label set is new (label embeddings are cached), so they are quantized for size and
accuracy, not speed: 8-bit weight-only MatMuls (``MatMulNBits``, activations stay fp32) and int8 embedding tables.
On MiniLM that kept the cosine to fp32 at 0.9993 (plain dynamic int8: 0.95 per tensor, 0.99 per channel) at 27%
of the size; on the default model's mpnet at 0.9992.
"""
from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import SnapsightError

METHODS = ("auto", "dynamic", "static")
log = logging.getLogger(__name__)


def choose_method(graph: Path, method: str, has_calibration: bool) -> str:
    """The image tower's int8 method: ``method`` itself unless it is ``auto``, which picks what measured faster.

    A conv-dominated graph (more Conv than MatMul/Gemm nodes: ResNets) gets static QDQ when calibration images are
    given (2.0x the fp32 graph's images/s on the default model, where dynamic int8 was no faster); everything else
    (ViTs: one Conv for the patches, MatMuls after it) gets dynamic (2.7-3.3x fp32 on ViT-B/32, static slower).
    """
    if method != "auto":
        return method
    import onnx

    ops = Counter(node.op_type for node in onnx.load(str(graph), load_external_data=False).graph.node)
    if ops["Conv"] > ops["MatMul"] + ops["Gemm"]:
        if has_calibration:
            return "static"
        log.warning("the image tower is convolutional: dynamic int8 leaves its convolutions in fp32 (no faster); "
                    "pass --calibration IMAGES for static int8, which ran it 2x faster")
    return "dynamic"


def quantize_graph(src: Path, dst: Path, method: str = "dynamic",
                   calibration: Iterable[np.ndarray] | None = None) -> Path:
    """Write an int8 version of graph ``src`` at ``dst``.

    ``dynamic``: MatMul/Gemm weights int8 (``QInt8``), activations quantized per call. ``static``: QDQ format,
    per-channel int8 weights, uint8 activations with MinMax ranges from ``calibration`` (an iterable of input
    batches for the graph's one input).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("root").setLevel(logging.ERROR)  # the quantizer logs every skipped node at WARNING
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional optimisation; quantize the graph as exported
            prepared = src
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"])
        elif method == "static":
            batches = list(calibration or [])
            if not batches:
                raise SnapsightError("static int8 quantization needs calibration images (--calibration FOLDER)")
            quantize_static(str(prepared), str(dst), _Reader(str(prepared), batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        else:
            raise SnapsightError(f"unknown int8 method {method!r}; use one of {', '.join(METHODS)}")
    return dst


def quantize_text_graph(src: Path, dst: Path, block_size: int = 32) -> Path:
    """Write text graph ``src`` at ``dst`` with 8-bit weight-only MatMuls and int8 embedding tables (Gather)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("root").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        weight_only = Path(tmp) / "matmul8.onnx"
        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=block_size, is_symmetric=True)
        q.process()
        q.model.save_model_to_file(str(weight_only), use_external_data_format=False)
        quantize_dynamic(str(weight_only), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["Gather"])
    return dst


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, model_path: str, batches: list[np.ndarray]):
        import onnxruntime as ort

        self.name = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self.batches, None)
        return None if b is None else {self.name: b}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass
