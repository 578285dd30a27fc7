"""The lab's processes (agents, the phone rack and its runners) weigh little against the
server in the scheduler, also where the kernel groups CPU time by session (autogroups):
there, niceness inside a session of its own changes nothing against other sessions, and
fifty agents each in their own session weighed as much as the server each (bench/README,
"Device lab under load", sixth runs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.device_agent.adb_standin import make_sandbox

from .rack import PhoneRack, PhoneSpec
from .server import LOW_NICENESS, lower_priority

AUTOGROUPS = Path("/proc/self/autogroup").exists()


def session_group(pid: int) -> list[str]:
    """`/proc/PID/autogroup` as words: ["/autogroup-N", "nice", "K"], or [] for a process
    in the kernel's default group, which the kernel prints as nothing (a process of the
    session the machine booted in, e.g. a CI container's own: kernel/sched/autogroup.c,
    proc_sched_autogroup_show_task)."""
    return Path(f"/proc/{pid}/autogroup").read_text().split()


def niceness(pid: int) -> tuple[int, int | None]:
    """(the process's niceness, its session group's niceness or None without autogroups)."""
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    if not AUTOGROUPS:
        return nice, None
    group = session_group(pid)
    assert group, f"process {pid} has no session group of its own"
    return nice, int(group[-1])


def test_a_low_priority_child_in_its_own_session_lowers_its_session_group():
    proc = subprocess.Popen(
        ["sleep", "30"], start_new_session=True, preexec_fn=lambda: lower_priority("low")
    )
    try:
        expected = (LOW_NICENESS, LOW_NICENESS if AUTOGROUPS else None)
        assert niceness(proc.pid) == expected
    finally:
        proc.kill()
        proc.wait()


def test_the_phone_rack_runs_in_a_low_session_of_its_own(tmp_path):
    rack = PhoneRack([PhoneSpec(0, make_sandbox(tmp_path / "phone"))])
    ports = rack.start()
    try:
        assert set(ports) == {0} and ports[0] > 0
        pid = rack._proc.pid
        assert niceness(pid) == (LOW_NICENESS, LOW_NICENESS if AUTOGROUPS else None)
        if AUTOGROUPS:
            assert session_group(pid)[0] != (session_group(os.getpid()) or [None])[0]
    finally:
        rack.stop()


@pytest.mark.skipif(not AUTOGROUPS, reason="this kernel has no autogroups")
def test_without_the_group_step_a_niced_session_keeps_the_default_weight():
    """What the group step is for: niceness alone leaves the new session's group at the
    weight every session starts with (this test's own, unless it runs niced)."""
    proc = subprocess.Popen(
        ["sleep", "30"], start_new_session=True, preexec_fn=lambda: os.nice(LOW_NICENESS)
    )
    try:
        assert niceness(proc.pid) == (LOW_NICENESS, 0)
    finally:
        proc.kill()
        proc.wait()
