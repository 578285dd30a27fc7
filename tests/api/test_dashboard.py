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
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")

GENOME = {"global": {"width": 64, "vocab_size": 257, "tie_embeddings": True, "block_repeat": 1,
                     "depth": 2},
          "backbone": [{"op": "hyena_y", "share_featurizer": None, "share_weights": None},
                       {"op": "swiglu", "share_featurizer": None, "share_weights": None}],
          "operators": {}}


@pytest.fixture
def served(tmp_path):
    settings = Settings(data_dir=tmp_path, admin_key="k", enroll_token="e",
                        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
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
    job = jobs.create_job(s, "seeded", {"objectives": ["perplexity", "params"],
                                        "evolution": {"generations": 3}})
    rows = results.add_candidates(s, job.id, 0, [
        {"genome": GENOME, "genome_hash": f"{i:016x}", "origin": "random",
         "predictions": {"perplexity": {"mean": 8.0 + i, "log_std": 0.1}}} for i in range(3)])
    for row, (ppl, params) in zip(rows, [(9.25, 1000), (7.75, 3000), (8.5, 5000)]):
        results.set_candidate_result(s, row.id, "done", {"perplexity": ppl, "params": params})
    ids = [r.id for r in rows]
    results.write_generation(s, job.id, 0, ids, ids[:2], 0.31, 3)
    results.write_generation(s, job.id, 1, ids, ids[:2], 0.42, 3, {"predictor": {
        "generation": {"perplexity": {"n": 3, "kendall_tau": 0.5, "mdape": 0.1}}}})
    devices.enroll_device(s, "pixel", {"backend": "adb", "model": "Pixel 8", "cpu_count": 8,
                                       "ram_bytes": 8 << 30})
    return job.id, ids


def test_dashboard_shows_seeded_data_and_new_generations_live(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    job_id, ids = seed(app)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
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
        red, green, blue = (int(catalog.REGISTRY["hyena_y"].colour[i:i + 2], 16) for i in (1, 3, 5))
        assert page.evaluate("getComputedStyle(document.querySelector('#layers .layer'))"
                             ".backgroundColor") == f"rgb({red}, {green}, {blue})"

        # A new generation appears without a reload.
        s = app.state.sessions
        new = results.add_candidates(s, job_id, 2, [{"genome": GENOME,
                                                     "genome_hash": "f" * 16,
                                                     "origin": "mutation",
                                                     "parents": ["0" * 16]}])[0]
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
        assert "Pixel 8" in page.inner_text("#devices")
        page.goto(f"{url}/#/")
        page.wait_for_selector("#jobs td")
        assert "seeded" in page.inner_text("#jobs")
        browser.close()
