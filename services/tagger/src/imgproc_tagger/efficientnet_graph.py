"""Build the EfficientNet-Lite0 ONNX graph from its state dict, with the `onnx` package alone.

Architecture (the official TF EfficientNet-Lite, as the reference PyTorch code mirrors it):
a 3×3/2 stem of 32 channels, seven stages of MBConv blocks without squeeze-excitation, a 1×1
head of 1280 channels, global average pooling and a 1000-way linear layer. ReLU6 everywhere,
batch norm with eps 1e-3, TF "SAME" padding (computed statically for the 224×224 input, which can
pad more on the bottom/right than on the top/left). Batch norm is folded into the convolutions,
so inference is convolutions, clips and adds only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_SIZE = 224
NUM_CLASSES = 1000
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Old enough for every onnxruntime in use; new enough for everything the graph needs.
OPSET = 17
IR_VERSION = 8

_BN_EPS = 1e-3
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


class GraphError(Exception):
    """The state dict does not fit the EfficientNet-Lite0 architecture."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF "SAME" padding for one spatial dimension: (pad_before, pad_after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class _GraphBuilder:
    def __init__(self, weights: dict[str, np.ndarray[Any, Any]]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _weight(self, name: str) -> np.ndarray[Any, Any]:
        try:
            return self.weights[name].astype(np.float32)
        except KeyError:
            raise GraphError(f"the weights lack {name!r}") from None

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def _constant(self, hint: str, value: np.ndarray[Any, Any]) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def conv_bn(
        self,
        x: str,
        size: int,
        conv: str,
        bn: str,
        *,
        stride: int = 1,
        groups: int = 1,
        relu6: bool = True,
    ) -> tuple[str, int]:
        """Conv (no bias) + folded batch norm (+ ReLU6); returns the output and its size."""
        kernel_w = self._weight(f"{conv}.weight")
        gamma, beta = self._weight(f"{bn}.weight"), self._weight(f"{bn}.bias")
        mean, var = self._weight(f"{bn}.running_mean"), self._weight(f"{bn}.running_var")
        scale = gamma / np.sqrt(var + _BN_EPS)
        folded_w = (kernel_w * scale[:, None, None, None]).astype(np.float32)
        folded_b = (beta - mean * scale).astype(np.float32)
        kernel = kernel_w.shape[-1]
        before, after, out_size = same_padding(size, kernel, stride)
        y = self._name(conv.replace(".", "_"))
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._constant("w", folded_w), self._constant("b", folded_b)],
                [y],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[before, before, after, after],
                group=groups,
            )
        )
        if relu6:
            y = self.relu6(y)
        return y, out_size

    def relu6(self, x: str) -> str:
        y = self._name("relu6")
        low = self._constant("zero", np.array(0.0, dtype=np.float32))
        high = self._constant("six", np.array(6.0, dtype=np.float32))
        self.nodes.append(helper.make_node("Clip", [x, low, high], [y]))
        return y

    def mbconv(self, x: str, size: int, index: int, stage: Stage, first: bool) -> tuple[str, int]:
        prefix = f"_blocks.{index}"
        in_channels = stage.in_channels if first else stage.out_channels
        stride = stage.stride if first else 1
        h = x
        if stage.expand != 1:
            h, size_h = self.conv_bn(h, size, f"{prefix}._expand_conv", f"{prefix}._bn0")
        else:
            size_h = size
        h, out_size = self.conv_bn(
            h,
            size_h,
            f"{prefix}._depthwise_conv",
            f"{prefix}._bn1",
            stride=stride,
            groups=in_channels * stage.expand,
        )
        h, out_size = self.conv_bn(
            h, out_size, f"{prefix}._project_conv", f"{prefix}._bn2", relu6=False
        )
        if stride == 1 and in_channels == stage.out_channels:
            y = self._name("skip")
            self.nodes.append(helper.make_node("Add", [h, x], [y]))
            h = y
        return h, out_size

    def build(self) -> onnx.ModelProto:
        x, size = self.conv_bn(INPUT_NAME, INPUT_SIZE, "_conv_stem", "_bn0", stride=2)
        index = 0
        for stage in STAGES:
            for repeat in range(stage.repeats):
                x, size = self.mbconv(x, size, index, stage, first=repeat == 0)
                index += 1
        if f"_blocks.{index}._depthwise_conv.weight" in self.weights:
            raise GraphError("the weights have more blocks than EfficientNet-Lite0")
        x, size = self.conv_bn(x, size, "_conv_head", "_bn1")
        pooled, flat = self._name("pool"), self._name("flat")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        self.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        fc_w, fc_b = self._weight("_fc.weight"), self._weight("_fc.bias")
        if fc_w.shape != (NUM_CLASSES, _HEAD_CHANNELS):
            raise GraphError(f"unexpected classifier shape {fc_w.shape}")
        self.nodes.append(
            helper.make_node(
                "Gemm",
                [flat, self._constant("fc_w", fc_w), self._constant("fc_b", fc_b)],
                [OUTPUT_NAME],
                transB=1,
            )
        )
        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite0",
            [
                helper.make_tensor_value_info(
                    INPUT_NAME, TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE]
                )
            ],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", NUM_CLASSES])],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="imgproc-tagger",
        )
        model.ir_version = IR_VERSION
        return model


def build_efficientnet_lite0(weights: dict[str, np.ndarray[Any, Any]]) -> onnx.ModelProto:
    """The checked ONNX model for an EfficientNet-Lite0 ImageNet state dict.

    Raises `GraphError` when the weights do not fit the architecture.
    """
    stem = weights.get("_conv_stem.weight")
    if stem is None or stem.shape != (_STEM_CHANNELS, 3, 3, 3):
        raise GraphError("the weights have no EfficientNet-Lite0 stem")
    try:
        model = _GraphBuilder(weights).build()
    except (ValueError, IndexError) as exc:  # shape mismatches while folding
        raise GraphError(f"the weights do not fit EfficientNet-Lite0: {exc}") from exc
    onnx.checker.check_model(model)
    return model
