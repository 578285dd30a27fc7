"""The last rewrite of every exported graph, before its file is hashed: devices get graphs
without this host's paths (`strip_host_metadata`: the exporter annotates nodes with Python
stack traces naming the source tree and environment, and every enrolled device downloads
the graphs) and with each state output scheduled right after its layer (`finish_graph`)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def _host_paths() -> tuple[str, ...]:
    """Absolute folders whose names must not leave this host inside a graph."""
    folders = {
        str(Path(__file__).resolve().parents[2]),
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        str(Path.home()),
        tempfile.gettempdir(),
    }
    return tuple(sorted(f for f in folders if f and f != os.sep))


def _names_host(text: str, paths: tuple[str, ...]) -> bool:
    return 'File "' in text or any(p in text for p in paths)


def finish_graph(path: Path) -> int:
    """Rewrite the ONNX file at `path` as devices get it: host metadata stripped
    (`strip_host_metadata`) and state outputs scheduled right after their layers
    (`state_schedule`). Returns how many metadata entries went."""
    import onnx

    from workers.export.state_schedule import schedule_state_outputs_early

    model = onnx.load(str(path))
    removed = strip_host_metadata(model)
    schedule_state_outputs_early(model.graph)
    onnx.save(model, str(path))
    return removed


def strip_host_metadata(model) -> int:
    """Remove the stack traces and every other doc string or metadata entry that names a host
    path from an onnx ModelProto (its graph, subgraphs and functions), in place, and return
    how many entries went. The computation is untouched."""
    paths = _host_paths()
    removed = 0

    def clean(item) -> None:
        nonlocal removed
        if getattr(item, "doc_string", "") and _names_host(item.doc_string, paths):
            item.doc_string = ""
            removed += 1
        if hasattr(item, "metadata_props"):
            keep = [
                (m.key, m.value)
                for m in item.metadata_props
                if m.key != STACK_TRACE_KEY and not _names_host(m.value, paths)
            ]
            removed += len(item.metadata_props) - len(keep)
            if len(keep) != len(item.metadata_props):
                del item.metadata_props[:]
                for key, value in keep:
                    item.metadata_props.add(key=key, value=value)

    def graph(g) -> None:
        clean(g)
        for value in (*g.input, *g.output, *g.value_info, *g.initializer):
            clean(value)
        for node in g.node:
            clean(node)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    graph(attribute.g)
                for sub in attribute.graphs:
                    graph(sub)

    clean(model)
    graph(model.graph)
    for function in model.functions:
        clean(function)
        for node in function.node:
            clean(node)
    return removed
