"""What an exported graph file holds: its checksum and the bytes of its weights."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The checksum a manifest records for a graph file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def initializer_bytes(path: str | Path) -> int:
    """Bytes of every initializer (weights, quantization scales and zero points, constant
    tables) in the ONNX file at `path`, subgraphs included, external data counted by its
    declared length. This is what a phone keeps resident for the graph's weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = 0

    def tensor_bytes(tensor) -> int:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            return int(next((e.value for e in tensor.external_data if e.key == "length"), 0))
        if tensor.raw_data:
            return len(tensor.raw_data)
        return onnx.numpy_helper.to_array(tensor).nbytes

    def graph(g) -> None:
        nonlocal total
        total += sum(tensor_bytes(t) for t in g.initializer)
        for node in g.node:
            for attribute in node.attribute:
                if node.op_type == "Constant" and attribute.HasField("t"):
                    total += tensor_bytes(attribute.t)
                if attribute.HasField("g"):
                    graph(attribute.g)
                for sub in attribute.graphs:
                    graph(sub)

    graph(model.graph)
    return total
