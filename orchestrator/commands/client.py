"""`tailor submit`, `tailor status`, `tailor export`: the command line over the REST API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli_support import fail, print_json

SERVER = typer.Option("http://127.0.0.1:8000", "--server", envvar="TAILOR_SERVER",
                      help="API base URL")
ADMIN_KEY = typer.Option(None, "--admin-key", envvar="TAILOR_ADMIN_KEY",
                         help="admin Bearer key")


def _request(method: str, url: str, key: str | None = None, **kwargs) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=60, **kwargs)
    except httpx.TransportError as exc:
        fail(f"cannot reach {url}: {exc}")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        fail(f"HTTP {response.status_code}: {detail}")
    return response


def submit(spec_path: Path = typer.Argument(..., metavar="SPEC.yaml|json"),
           server: str = SERVER, admin_key: Optional[str] = ADMIN_KEY):
    """Submit a job spec; prints the new job's id."""
    import yaml

    try:
        text = spec_path.read_text()
    except OSError as exc:
        fail(f"cannot read {spec_path}: {exc.strerror}")
    try:
        spec = json.loads(text) if spec_path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        fail(f"{spec_path} is not valid {'JSON' if spec_path.suffix == '.json' else 'YAML'}: "
             f"{str(exc).splitlines()[0]}")
    print_json(_request("POST", f"{server}/api/v1/jobs", admin_key, json=spec).json())


def status(job_id: int = typer.Argument(...), server: str = SERVER):
    """A job's status, progress and current Pareto front."""
    job = _request("GET", f"{server}/api/v1/jobs/{job_id}").json()
    front = _request("GET", f"{server}/api/v1/jobs/{job_id}/pareto").json()
    print_json({"id": job["id"], "name": job["name"], "status": job["status"],
                "generations": f"{job['generations_done']}/{job['generations_total']}",
                "evaluations": job["evaluations_done"], "error": job["error"],
                "pareto": [{"id": c["id"], "metrics": c["metrics"]}
                           for c in front["candidates"]]})


def export(job_id: int = typer.Argument(...), candidate_id: int = typer.Argument(...),
           out: Path = typer.Option(..., help="output directory"),
           server: str = SERVER, admin_key: Optional[str] = ADMIN_KEY):
    """Download a candidate: genome JSON, trained PyTorch weights and ONNX graphs (exported
    here when the search did not profile it)."""
    detail = _request("GET", f"{server}/api/v1/jobs/{job_id}/candidates/{candidate_id}").json()
    out.mkdir(parents=True, exist_ok=True)
    (out / "genome.json").write_text(json.dumps(detail["genome"], indent=2))
    (out / "metrics.json").write_text(json.dumps(detail["metrics"], indent=2))
    names = []
    for artifact in detail["artifacts"]:
        data = _request("GET", server + artifact["url"], admin_key).content
        (out / artifact["name"]).write_bytes(data)
        names.append(artifact["name"])
    if "decode.onnx" not in names:
        from workers.export.onnx_export import export_onnx
        from workers.model.compiler import compile_genome

        model = compile_genome(detail["genome"], seed=0)
        if "weights.pt" in names:
            import torch

            try:
                model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
            except RuntimeError:
                pass  # trained at evaluation size: export the full-size graph untrained
        export_onnx(detail["genome"], out, model=model)
        names += ["prefill.onnx", "decode.onnx", "manifest.json"]
    print_json({"out": str(out), "files": sorted(set(names) | {"genome.json", "metrics.json"})})


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("export")(export)
