"""Each fault of `bench.fleet` at small size (three phones, one per device class, real
`tailor agent` processes, the real server on SQLite, started once for the module; a round
of two jobs per fault): nothing measured twice, nothing lost, every job completes by
itself; and the fault really happened.

The 50-agent runs with every fault at once are `python -m bench.fleet` (slow).
"""

from __future__ import annotations

import pytest

from .harness import FleetConfig, FleetRun


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One lab for the module (server and agents started once): each test runs its own
    round of two jobs with its fault."""
    config = FleetConfig(
        workdir=tmp_path_factory.mktemp("fleet"), agents=3, jobs=2, tasks=9, deadline_s=150
    )
    with FleetRun(config) as lab:
        yield lab


def run_round(fleet: FleetRun, faults: tuple[str, ...]) -> dict:
    result = fleet.run(faults)
    assert result["duplicates"] == 0 and result["measured_twice"] == 0, result
    assert result["lost"] == 0 and result["tasks_done"] == result["tasks"], result
    assert result["jobs_completed"] == 2 and result["every_job_completed_by_itself"], result
    return result


def test_links_cut_or_stalled_mid_upload_lose_nothing(fleet):
    """One agent's report upload is cut before it arrives, cut after the server stored it,
    then stalled; its graph push to the phone is cut, then stalled."""
    result = run_round(fleet, ("link-stall",))
    assert result["faults_fired"] == {"server_link": 3, "phone_link": 2}


def test_a_phone_unplugged_mid_measurement_and_plugged_back_loses_nothing(fleet):
    result = run_round(fleet, ("unplug",))
    assert result["events"]["unplugged_at"], result["events"]


def test_the_server_killed_mid_run_and_restarted_loses_nothing(fleet):
    result = run_round(fleet, ("server-kill",))
    assert result["events"]["agents_back_after_server_restart_s"] < 30


def test_every_agent_restarted_at_once_reattaches_without_enrolling(fleet):
    """A power cut for the whole lab (SIGKILL: no task is released): known devices come
    back on their saved tokens, and what their dead processes held is measured anyway."""
    result = run_round(fleet, ("restart-storm",))
    assert result["agent_starts"] == 3
    assert result["events"]["agents_back_after_restart_storm_s"] < 30
    assert result["events"]["enrollments_in_storm"] == 0


def test_an_unknown_fault_is_refused_naming_the_choices(fleet):
    with pytest.raises(ValueError, match="server-kill, link-stall, unplug, restart-storm"):
        fleet.run(("flood",))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fifty_agents_with_every_fault_at_once(backend):
    """Issue 25's acceptance run (several minutes): 50 agents, 3 jobs, 600 tasks, every fault
    in one run; also writes bench/results/fleet.json."""
    from bench.fleet import ALL_FAULTS, main

    result = main(
        [
            *("--agents", "50", "--jobs", "3", "--tasks", "600", "--backend", backend),
            *("--faults", ALL_FAULTS),
        ]
    )
    assert result["duplicates"] == 0 and result["lost"] == 0, result
    assert result["jobs_completed"] == 3 and result["every_job_completed_by_itself"], result
    assert result["lease_p99_ms"] <= 1000 and result["heartbeat_p99_ms"] <= 1000, result
    events = result["events"]
    assert events["agents_back_after_server_restart_s"] <= 30, events
    assert events["agents_back_after_restart_storm_s"] <= 30, events
