"""Artifacts (ONNX graphs, manifests, weights) on disk, indexed by genome hash."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Artifact, Candidate

from . import NotFound, SessionFactory, transaction

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadName(ValueError):
    pass


def check_name(name: str) -> str:
    """Artifact names are single file names: no separators, no '..', no hidden files."""
    if not NAME.match(name) or ".." in name:
        raise BadName(
            f"artifact name {name!r} must be a plain file name (letters, digits, '.', '_', '-')"
        )
    return name


def store_artifacts(
    sessions: SessionFactory, artifact_dir: Path, genome_hash: str, files: dict[str, bytes]
) -> list[Artifact]:
    if not re.fullmatch(r"[0-9a-f]{8,64}", genome_hash):
        raise BadName(f"genome hash {genome_hash!r} is not hexadecimal")
    folder = Path(artifact_dir) / genome_hash
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, data in sorted(files.items()):
        path = folder / check_name(name)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        digest = hashlib.sha256(data).hexdigest()
        with transaction(sessions) as s:
            row = s.scalar(
                select(Artifact).where(Artifact.genome_hash == genome_hash, Artifact.name == name)
            )
            if row is None:
                row = Artifact(
                    genome_hash=genome_hash,
                    name=name,
                    sha256=digest,
                    size_bytes=len(data),
                    path=str(path),
                )
                s.add(row)
            else:
                row.sha256, row.size_bytes, row.path = digest, len(data), str(path)
            rows.append(row)
    return rows


def artifacts_of(sessions: SessionFactory, genome_hash: str) -> list[Artifact]:
    with transaction(sessions) as s:
        return artifacts_in(s, genome_hash)


def artifacts_in(s: Session, genome_hash: str) -> list[Artifact]:
    """Every file stored for a genome, by name, inside the caller's transaction."""
    query = select(Artifact).where(Artifact.genome_hash == genome_hash).order_by(Artifact.name)
    return list(s.scalars(query).all())


def artifact_for(sessions: SessionFactory, candidate_id: int, name: str) -> Artifact:
    check_name(name)
    with transaction(sessions) as s:
        candidate = s.get(Candidate, candidate_id)
        if candidate is None:
            raise NotFound(f"candidate {candidate_id} not found")
        row = s.scalar(
            select(Artifact).where(
                Artifact.genome_hash == candidate.genome_hash, Artifact.name == name
            )
        )
        if row is None:
            raise NotFound(f"candidate {candidate_id} has no artifact {name!r}")
        return row
