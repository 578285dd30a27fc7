"""Order a graph's nodes so ONNX Runtime computes each decode-state output right after its layer.

ONNX Runtime's default execution order is a reverse depth-first walk from the graph's leaf
nodes (nodes whose outputs nothing reads), the last leaf in file order first. A state output
computed from a layer's full-length tensors by nodes nothing else needs — a linear
recurrence's final state, a modal convolution's — is a leaf of its own. Traced in place it
comes before the logits in the file, so the walk computes it after the logits and the
layer's full-length tensors stay alive through the prefill's peak. Moving each state-only
branch behind the main path, the first layer's last in the file, makes the walk take that
branch first, so it runs as soon as its layer has, and its inputs are freed there.

A runtime that re-creates the logits' producer (onnxruntime fuses int8's quantized MatMul
into a new node, which the walk then takes first) undoes this, so states that can be made
part of the main path are (`CausalDepthwiseConv.prefill` splits a conv's state off its
input); this pass is for the rest. The computation is unchanged (the same nodes, in another
valid topological order); only when a runtime frees memory changes.
"""

from __future__ import annotations

from collections.abc import Iterable


def schedule_state_outputs_early(graph, main_outputs: Iterable[str] = ("logits",)) -> None:
    """Reorder `graph.node` (an onnx GraphProto, in place): the nodes the main outputs need
    first, in their order, then the nodes only state outputs need, grouped by the last graph
    output each reaches, later outputs' groups first. A node feeding several groups goes in
    the latest of them, so every node still comes after the nodes that produce its inputs."""
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    outputs = [o.name for o in graph.output]
    main_names = set(main_outputs)

    def ancestors(names: Iterable[str]) -> set[int]:
        seen: set[int] = set()
        stack = [producer[n] for n in names if n in producer]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(producer[n] for n in nodes[i].input if n in producer)
        return seen

    main = ancestors(n for n in outputs if n in main_names)
    group: dict[int, int] = {}
    for k, name in enumerate(outputs):
        if name in main_names:
            continue
        for i in ancestors([name]) - main:
            group[i] = max(group.get(i, k), k)
    rest = [i for i in range(len(nodes)) if i not in main and i not in group]
    order = [i for i in range(len(nodes)) if i in main] + rest
    order += sorted(group, key=lambda i: (-group[i], i))
    _check_topological(
        [nodes[i] for i in order],
        {i.name for i in graph.input} | {i.name for i in graph.initializer},
    )
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _check_topological(nodes, available: set[str]) -> None:
    defined = set(available)
    for node in nodes:
        missing = [n for n in node.input if n and n not in defined]
        if missing:  # a bug here, never the model's: the reorder must keep the graph valid
            raise AssertionError(f"node {node.name} would read {missing} before they exist")
        defined.update(node.output)
