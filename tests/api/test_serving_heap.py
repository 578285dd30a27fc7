"""A serving process keeps what its startup made out of the garbage collector's walks
(api.app.freeze_startup_objects, called by `tailor serve`): a full collection over them
stopped every request for 80-110 ms (bench/README, "Device lab under load")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

STARTUP = """
import gc, sys
from api.app import create_app, freeze_startup_objects
from api.settings import Settings
app = create_app(Settings(database_url="sqlite:///" + sys.argv[1], data_dir=sys.argv[2]))
gc.collect()
before = len(gc.get_objects())
freeze_startup_objects()
print(before, len(gc.get_objects()))
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
    before, after = map(int, run.stdout.split())
    assert before > 10_000  # the imports' modules, routes, schemas and mappers
    assert after < before / 100  # what is left for a collection to walk
