"""Tiny prefill/decode ONNX graphs that follow the manifest conventions (protocol.py):
prefill(input_ids[1,seq]) -> logits, present_key[1,seq,D], state[1,1,D];
decode(input_ids[1,1], position[1], past_key[1,past,D], state[1,1,D]) -> logits,
present_key[1,past+1,D], new_state — attention over the cache, so decode time grows with L."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.manifest import GraphManifest

VOCAB, WIDTH = 97, 64


def _weights(rng):
    return [
        numpy_helper.from_array(
            (rng.standard_normal((VOCAB, WIDTH)) * 0.1).astype(np.float32), "embedding"
        ),
        numpy_helper.from_array(
            (rng.standard_normal((WIDTH, VOCAB)) * 0.1).astype(np.float32), "unembedding"
        ),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]


def _save(graph, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_graphs(folder: Path, genome_hash: str = "f" * 16) -> GraphManifest:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    prefill = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input_ids"], ["present_key"]),
            helper.make_node("MatMul", ["present_key", "unembedding"], ["logits"]),
            helper.make_node("ReduceSum", ["present_key", "axis1"], ["state"], keepdims=1),
        ],
        "prefill",
        [helper.make_tensor_value_info("input_ids", i64, [1, "seq"])],
        [
            helper.make_tensor_value_info("logits", f32, [1, "seq", VOCAB]),
            helper.make_tensor_value_info("present_key", f32, [1, "seq", WIDTH]),
            helper.make_tensor_value_info("state", f32, [1, 1, WIDTH]),
        ],
        _weights(rng),
    )
    decode = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input_ids"], ["x"]),
            helper.make_node("Cast", ["position"], ["position_f"], to=f32),
            helper.make_node("Mul", ["position_f", "zero"], ["position_0"]),
            helper.make_node("Add", ["x", "position_0"], ["xp"]),
            helper.make_node("Concat", ["past_key", "xp"], ["present_key"], axis=1),
            helper.make_node("Transpose", ["present_key"], ["keys_t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["xp", "keys_t"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["weights"], axis=-1),
            helper.make_node("MatMul", ["weights", "present_key"], ["mixed"]),
            helper.make_node("Add", ["mixed", "past_state"], ["new_state"]),
            helper.make_node("MatMul", ["new_state", "unembedding"], ["logits"]),
        ],
        "decode",
        [
            helper.make_tensor_value_info("input_ids", i64, [1, 1]),
            helper.make_tensor_value_info("position", i64, [1]),
            helper.make_tensor_value_info("past_key", f32, [1, "past", WIDTH]),
            helper.make_tensor_value_info("past_state", f32, [1, 1, WIDTH]),
        ],
        [
            helper.make_tensor_value_info("logits", f32, [1, 1, VOCAB]),
            helper.make_tensor_value_info("present_key", f32, [1, "past_plus_1", WIDTH]),
            helper.make_tensor_value_info("new_state", f32, [1, 1, WIDTH]),
        ],
        _weights(rng) + [numpy_helper.from_array(np.zeros(1, np.float32), "zero")],
    )
    _save(prefill, folder / "prefill.onnx")
    _save(decode, folder / "decode.onnx")

    def spec(file, inputs, outputs):
        data = (folder / file).read_bytes()
        return {
            "file": file,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "inputs": inputs,
            "outputs": outputs,
        }

    def cache(name, shape):
        return {"name": name, "dtype": "float32", "shape": shape, "role": "cache"}

    manifest = GraphManifest.model_validate(
        {
            "genome_hash": genome_hash,
            "vocab_size": VOCAB,
            "opset": 17,
            "dtype": "float32",
            "graphs": {
                "prefill": spec(
                    "prefill.onnx",
                    [
                        {
                            "name": "input_ids",
                            "dtype": "int64",
                            "shape": [1, "seq"],
                            "role": "input_ids",
                        }
                    ],
                    [
                        {
                            "name": "logits",
                            "dtype": "float32",
                            "shape": [1, "seq", VOCAB],
                            "role": "logits",
                        },
                        cache("present_key", [1, "seq", WIDTH]),
                        cache("state", [1, 1, WIDTH]),
                    ],
                ),
                "decode": spec(
                    "decode.onnx",
                    [
                        {
                            "name": "input_ids",
                            "dtype": "int64",
                            "shape": [1, "seq"],
                            "role": "input_ids",
                        },
                        {"name": "position", "dtype": "int64", "shape": [1], "role": "position"},
                        cache("past_key", [1, "past", WIDTH]),
                        cache("past_state", [1, 1, WIDTH]),
                    ],
                    [
                        {
                            "name": "logits",
                            "dtype": "float32",
                            "shape": [1, "seq", VOCAB],
                            "role": "logits",
                        },
                        cache("present_key", [1, "past", WIDTH]),
                        cache("new_state", [1, 1, WIDTH]),
                    ],
                ),
            },
            "cache_pairs": {"past_key": "present_key", "past_state": "new_state"},
            "params": 2 * VOCAB * WIDTH,
            "cache_bytes_per_token": 4 * WIDTH,
            "cache_bytes_fixed": 4 * WIDTH,
        }
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=1))
    return manifest
