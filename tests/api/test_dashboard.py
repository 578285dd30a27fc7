"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

It loads a job with seeded generations, checks that the plots and the table show the
seeded values, then a new generation is written to the database and must appear without a
reload (the page polls `generations?since=` and applies the candidates it returns, never
refetching the whole candidate list). Layer colours come from the catalog endpoint."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from api.settings import Settings
from core import catalog
from store import devices, jobs, results

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)

GENOME = {
    "global": {
        "width": 64,
        "vocab_size": 257,
        "tie_embeddings": True,
        "block_repeat": 1,
        "depth": 2,
    },
    "backbone": [
        {"op": "hyena_y", "share_featurizer": None, "share_weights": None},
        {"op": "swiglu", "share_featurizer": None, "share_weights": None},
    ],
    "operators": {},
}


def launch(playwright):
    """Debian's Chromium, headless, as CI can run it."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def candidate_table(page, url: str, job_id: int, candidate_id: int, table: str) -> list:
    """Open a job's page, click one candidate and return the text of each cell of its
    `table.<table>`, row by row."""
    page.goto(f"{url}/#/jobs/{job_id}")
    page.wait_for_selector(f"#candidates tr[data-id='{candidate_id}']")
    page.click(f"#candidates tr[data-id='{candidate_id}']")
    page.wait_for_selector(f"table.{table} td")
    return page.evaluate(
        f"[...document.querySelectorAll('table.{table} tr')].map("
        "r => [...r.children].map(c => c.textContent.trim()))"
    )


@pytest.fixture
def served(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        admin_key="k",
        enroll_token="e",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    app = create_app(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def seed(app):
    s = app.state.sessions
    job = jobs.create_job(
        s, "seeded", {"objectives": ["perplexity", "params"], "evolution": {"generations": 3}}
    )
    rows = results.add_candidates(
        s,
        job.id,
        0,
        [
            {
                "genome": GENOME,
                "genome_hash": f"{i:016x}",
                "origin": "random",
                "predictions": {"perplexity": {"mean": 8.0 + i, "log_std": 0.1}},
            }
            for i in range(3)
        ],
    )
    for row, (ppl, params) in zip(rows, [(9.25, 1000), (7.75, 3000), (8.5, 5000)]):
        results.set_candidate_result(s, row.id, "done", {"perplexity": ppl, "params": params})
    ids = [r.id for r in rows]
    results.write_generation(s, job.id, 0, ids, ids[:2], 0.31, 3)
    results.write_generation(
        s,
        job.id,
        1,
        ids,
        ids[:2],
        0.42,
        3,
        {"predictor": {"generation": {"perplexity": {"n": 3, "kendall_tau": 0.5, "mdape": 0.1}}}},
    )
    devices.enroll_device(
        s, "pixel", {"backend": "adb", "model": "Pixel 8", "cpu_count": 8, "ram_bytes": 8 << 30}
    )
    broken, _ = devices.enroll_device(
        s, "broken", {"backend": "adb", "model": "Pixel 9", "cpu_count": 8, "ram_bytes": 8 << 30}
    )
    devices.heartbeat_device(
        s,
        broken.id,
        readiness={  # its preflight failed
            "ready": False,
            "reason": "the runner does not answer --help",
            "fix": "push a runner",
        },
    )
    return job.id, ids


def test_dashboard_shows_seeded_data_and_new_generations_live(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    job_id, ids = seed(app)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{url}/#/jobs/{job_id}")
        page.wait_for_selector("#candidates tr[data-id]")
        table = page.inner_text("#candidates")
        assert "9.250" in table and "7.750" in table and "5,000" in table
        # Plotly drew the seeded points and the hypervolume curve.
        assert page.evaluate("document.getElementById('pareto').data[0].x.length") == 3
        assert page.evaluate("document.getElementById('hv').data[0].y") == [0.31, 0.42]
        # Surrogate bookkeeping: predicted against measured, and tau per generation.
        assert page.evaluate("document.getElementById('predicted').data[0].x") == [8, 9, 10]
        assert page.evaluate("document.getElementById('accuracy').data[0].y") == [0.5]
        # Sorting by perplexity puts the lowest first.
        page.click("#candidates th[data-key='perplexity']")
        first = page.inner_text("#candidates tr[data-id] >> nth=0")
        assert "7.750" in first
        # Candidate detail: the layer diagram of its genome.
        page.click(f"#candidates tr[data-id='{ids[0]}']")
        page.wait_for_selector("#layers .layer")
        assert "hyena_y" in page.inner_text("#layers")
        red, green, blue = (
            int(catalog.REGISTRY["hyena_y"].colour[i : i + 2], 16) for i in (1, 3, 5)
        )
        assert (
            page.evaluate(
                "getComputedStyle(document.querySelector('#layers .layer')).backgroundColor"
            )
            == f"rgb({red}, {green}, {blue})"
        )

        # A new generation appears without a reload.
        s = app.state.sessions
        new = results.add_candidates(
            s,
            job_id,
            2,
            [
                {
                    "genome": GENOME,
                    "genome_hash": "f" * 16,
                    "origin": "mutation",
                    "parents": ["0" * 16],
                }
            ],
        )[0]
        results.set_candidate_result(s, new.id, "done", {"perplexity": 6.125, "params": 800})
        results.write_generation(s, job_id, 2, ids[:2] + [new.id], [new.id], 0.77, 4)
        # (polled from here: the page's Content-Security-Policy forbids wait_for_function's eval)
        deadline = time.monotonic() + 15
        while page.evaluate("document.getElementById('hv').data[0].y.length") != 3:
            assert time.monotonic() < deadline, "the new generation never appeared"
            time.sleep(0.2)
        assert "6.125" in page.inner_text("#candidates")
        assert len(page.query_selector_all("#candidates tr[data-id]")) == 4
        polls = [u for u in requested if "/generations?since=" in u]
        assert len(polls) >= 2 and any(u.endswith("since=2") for u in polls)
        assert not [u for u in requested if u.endswith(f"/jobs/{job_id}/candidates")]

        page.goto(f"{url}/#/devices")
        page.wait_for_selector("#devices td")
        assert "Pixel 8" in (table := page.inner_text("#devices"))
        assert "not ready: the runner does not answer --help\nfix: push a runner" in table
        page.goto(f"{url}/#/")
        page.wait_for_selector("#jobs td")
        assert "seeded" in page.inner_text("#jobs")
        browser.close()


def test_candidate_page_puts_precisions_side_by_side_and_a_scale_job_shows_both_rankings(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    s = app.state.sessions
    quantized = jobs.create_job(
        s, "int8", {"objectives": ["perplexity[:int8]", "params"], "evolution": {"generations": 1}}
    )
    row = results.add_candidates(s, quantized.id, 0, [{"genome": GENOME, "genome_hash": "a" * 16}])[
        0
    ]
    results.set_candidate_result(
        s,
        row.id,
        "done",
        {
            "perplexity": 9.5,
            "perplexity[:int8]": 9.875,
            "perplexity[:int4]": 11.25,
            "params": 1000,
            "decode_ms@64[Pixel 8]": 3.5,
            "decode_ms@64[Pixel 8:int8]": 1.75,
            "decode_ms@64[max:Pixel 8,SM-S928B:int8]": 2.5,
        },
    )
    results.write_generation(s, quantized.id, 0, [row.id], [row.id], 0.1, 1)

    source = jobs.create_job(s, "source", {"objectives": ["perplexity", "params"]})
    scale = {"source_job": source.id, "request": {"top": 2}, "members": []}
    scaled = jobs.create_job(
        s,
        "scaled",
        {"objectives": ["perplexity", "params"], "evolution": {"generations": 1}, "scale": scale},
    )
    rows = results.add_candidates(
        s,
        scaled.id,
        0,
        [{"genome": GENOME, "genome_hash": f"{i:016x}", "origin": f"scale:{i}"} for i in (7, 8)],
    )
    for r, ppl in zip(rows, (5.5, 4.25)):
        results.set_candidate_result(s, r.id, "done", {"perplexity": ppl, "params": 2000})
    report = {
        "source_job": source.id,
        "compared": 2,
        "kendall_tau": -1.0,
        "kept_on_front": 1,
        "search_front_members": 2,
        "members": [
            {
                "source_candidate": 7,
                "origin": "front",
                "candidate": rows[0].id,
                "search_perplexity": 8.0,
                "scaled_perplexity": 5.5,
                "params": 2000,
                "search_front": True,
                "scaled_front": False,
                "search_rank": 1,
                "scaled_rank": 2,
            },
            {
                "source_candidate": 8,
                "origin": "preset:lfm2",
                "candidate": rows[1].id,
                "search_perplexity": 9.0,
                "scaled_perplexity": 4.25,
                "params": 2000,
                "search_front": True,
                "scaled_front": True,
                "search_rank": 2,
                "scaled_rank": 1,
            },
        ],
    }
    results.write_generation(
        s, scaled.id, 0, [r.id for r in rows], [rows[1].id], 0.2, 2, {"scale": report}
    )
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        cells = candidate_table(page, url, quantized.id, row.id, "precisions")
        assert cells[0] == ["metric", "float32", "int8", "int4"]
        assert ["perplexity", "9.500", "9.875", "11.25"] in cells
        assert ["decode_ms@64[Pixel 8]", "3.500", "1.750", ""] in cells
        assert ["decode_ms@64[max:Pixel 8,SM-S928B]", "", "2.500", ""] in cells
        assert not [r for r in cells if r[0] == "params"]  # float only: not repeated here

        page.goto(f"{url}/#/jobs/{scaled.id}")
        page.wait_for_selector("#scale-table td")
        assert "rankings: -1 over 2 members" in page.inner_text("#scale-tau")
        assert "1 of 2 front members" in page.inner_text("#scale-tau")
        lines = page.inner_text("#scale-table").splitlines()
        assert "preset:lfm2" in lines[-1] and "4.250" in lines[-1]
        browser.close()


def test_a_multi_fidelity_job_shows_its_rungs_compute_and_each_candidates_rungs(served):
    """The rungs panel reads the generations' stats as the driver writes them
    (orchestrator/generation_costs.py); the candidate page lists the rungs it trained."""
    from playwright.sync_api import sync_playwright

    from orchestrator.compute_ledger import ComputeLedger, summed
    from orchestrator.generation_costs import compute_stats, rung_stats
    from orchestrator.search.fidelity import Rungs

    app, url = served
    s = app.state.sessions
    job = jobs.create_job(
        s, "rungs", {"objectives": ["perplexity", "params"], "evolution": {"generations": 1}}
    )
    rows = results.add_candidates(
        s, job.id, 0, [{"genome": GENOME, "genome_hash": f"{i:016x}"} for i in range(3)]
    )
    rungs = {  # candidate 0 went up both rungs, 1 stopped at the second, 2 at the first
        rows[0].genome_hash: [(1000, 40.5, True), (3000, 20.25, True), (9000, 12.5, None)],
        rows[1].genome_hash: [(1000, 42.0, True), (3000, 21.5, False)],
        rows[2].genome_hash: [(1000, 60.0, False)],
    }
    ledgers, logs = {}, {}
    for row in rows:
        entries = [
            {"tokens": t, "perplexity": p, "compute_s": t / 1000, "promoted": promoted}
            for t, p, promoted in rungs[row.genome_hash]
        ]
        ledger = ComputeLedger()
        for e in entries:
            ledger.add("training", e["compute_s"])
        ledger.add("device", 2.0)
        ledgers[row.genome_hash], logs[row.genome_hash] = ledger.to_json(), entries
        results.set_candidate_result(
            s, row.id, "done", {"perplexity": entries[-1]["perplexity"], "params": 1000},
            compute=ledger.to_json(), rungs=entries,
        )  # fmt: skip
    hashes = [r.genome_hash for r in rows]
    stats = {
        "compute": compute_stats(ledgers, hashes),
        "rungs": rung_stats(Rungs((1000, 3000, 9000)), logs, hashes),
    }
    ids = [r.id for r in rows]
    results.write_generation(s, job.id, 0, ids, ids[:1], 0.5, 3, stats)
    assert stats["compute"]["job"] == summed(list(ledgers.values()))
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(f"{url}/#/jobs/{job.id}")
        page.wait_for_selector("#rung-table td")
        table = page.inner_text("#rung-table")
        assert "1,000" in table and "9,000" in table  # the budgets as columns
        first_row = page.inner_text("#rung-table tr >> nth=1").split()
        assert first_row[:4] == ["0", "3", "2", "1"]  # generation 0 reached 3, 2, 1
        line = page.inner_text("#compute")
        assert "compute 18 CPU/GPU-s" in line and "phone 6 s" in line  # 13 + 4 + 1; 3 x 2
        page.click(f"#candidates tr[data-id='{rows[1].id}']")
        page.wait_for_selector("table.rungs")
        detail = page.inner_text("table.rungs")
        assert "3,000 tokens" in detail and "stopped here" in detail
        browser.close()


def test_each_measurement_shows_the_graph_revision_its_task_was_queued_for(served):
    """A job resumed across an exporter upgrade holds measurements of two graph revisions
    (store/tasks.py `enqueue_task`); the candidate page says which each row is of, a task
    still queued included, and says nothing for a task queued before revisions were kept."""
    from playwright.sync_api import sync_playwright

    from store import tasks
    from store.leasing import lease_task

    from .test_api import measurement_report

    app, url = served
    s = app.state.sessions
    job = jobs.create_job(
        s, "revisions", {"objectives": ["perplexity", "params"], "evolution": {"generations": 1}}
    )
    [row] = results.add_candidates(s, job.id, 0, [{"genome": GENOME, "genome_hash": "c" * 16}])
    results.set_candidate_result(s, row.id, "done", {"perplexity": 9.5, "params": 1000})
    results.write_generation(s, job.id, 0, [row.id], [row.id], 0.1, 1)
    spec = {"prefill_lengths": [16], "decode_contexts": [16]}
    props = {"backend": "host", "model": "host", "cpu_count": 2, "ram_bytes": 1 << 30}
    for device_class, revision in (("host", 6), ("Pixel 8", None)):
        tasks.enqueue_task(s, job.id, row.id, device_class, spec, graph_revision=revision)
        device, _ = devices.enroll_device(s, device_class, {**props, "model": device_class})
        task = lease_task(s, device, 60)
        tasks.report_task(s, task.id, device, measurement_report())
    tasks.enqueue_task(s, job.id, row.id, "SM-S928B", spec, graph_revision=7)  # not leased
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        cells = candidate_table(page, url, job.id, row.id, "measurements")
        graphs = {(r[0].split(" #")[0], r[1]) for r in cells[1:]}
        assert graphs == {
            ("host", "prefill@16 · revision 6"),
            ("host", "decode@16 · revision 6"),
            ("Pixel 8", "prefill@16"),
            ("Pixel 8", "decode@16"),
            ("SM-S928B", "queued · revision 7"),
        }, cells
        browser.close()
