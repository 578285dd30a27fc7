"""Small pieces the driver and the CLI share: who owns a job, and a scale-up job's members."""

from __future__ import annotations

from core.genome import Genome
from core.scale_check import ScaleSpec
from orchestrator.search.evolution import Child


def scale_children(scale: ScaleSpec) -> list[Child]:
    """A scale-up job's one generation: its members, resized already, in order."""
    return [
        Child(Genome.coerce(m.genome), origin=f"scale:{m.source_candidate}") for m in scale.members
    ]


def owner_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
