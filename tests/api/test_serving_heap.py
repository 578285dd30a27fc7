"""A serving process keeps what its startup made out of the garbage collector's walks
(api.app.freeze_startup_objects, called by `tailor serve` and by each of its workers,
`api.app.worker_app`): a full collection over them stopped every request for 80-110 ms
(bench/README, "Device lab under load")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STARTUP = """
import gc, os, sys
os.environ["TAILOR_DATABASE_URL"] = "sqlite:///" + sys.argv[1]
os.environ["TAILOR_DATA_DIR"] = sys.argv[2]
from api.app import worker_app
from store.engine import make_engine, upgrade
upgrade(make_engine(os.environ["TAILOR_DATABASE_URL"]))
gc.collect()
before = len(gc.get_objects())
worker_app()  # what each of `tailor serve --workers N`'s processes serves
print(before, len(gc.get_objects()), gc.get_freeze_count())
"""


def test_the_app_s_startup_objects_are_left_out_of_every_collection(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", STARTUP, str(tmp_path / "t.db"), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    before, after, frozen = map(int, run.stdout.split())
    assert frozen > before > 10_000  # the imports' modules, routes, schemas, mappers: frozen
    assert after < before / 100  # what is left for a collection to walk
