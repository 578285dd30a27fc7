"""Valid inputs for a graph at length L, from its manifest alone.

Token ids uniform in [0, vocab_size); `position` = L (the absolute index of the token fed at
decode context L); cache tensors with their "past" dimension = L, or min(L, past_cap) for a
windowed cache, filled with small random floats (timing does not depend on the values).
Written as ONNX test data (`test_data_set_0/input_N.pb`, TensorProtos named after the
inputs), the layout onnxruntime_perf_test reads beside a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.manifest import GraphManifest

DTYPES = {"int64": np.int64, "float32": np.float32, "float16": np.float16}


def graph_inputs(
    manifest: GraphManifest, kind: str, length: int, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    feeds = {}
    for spec in manifest.profiled(kind).inputs:
        if spec.role == "input_ids":
            seq = length if kind == "prefill" else 1
            shape = [seq if d == "seq" else d for d in spec.shape]
            feeds[spec.name] = rng.integers(0, manifest.vocab_size, shape, dtype=np.int64)
        elif spec.role == "position":
            feeds[spec.name] = np.full(
                [1 if d == "seq" else d for d in spec.shape], length, dtype=np.int64
            )
        else:
            past = min(length, spec.past_cap) if spec.past_cap else length
            shape = [past if d == "past" else (1 if d == "seq" else d) for d in spec.shape]
            feeds[spec.name] = (rng.standard_normal(shape) * 0.1).astype(DTYPES[spec.dtype])
    return feeds


def write_test_data(folder: Path, feeds: dict[str, np.ndarray]) -> list[Path]:
    """Write `folder/test_data_set_0/input_N.pb` in the graph's input order."""
    from onnx import numpy_helper

    data_dir = folder / "test_data_set_0"
    data_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (name, array) in enumerate(feeds.items()):
        path = data_dir / f"input_{index}.pb"
        path.write_bytes(numpy_helper.from_array(array, name=name).SerializeToString())
        written.append(path)
    return written
