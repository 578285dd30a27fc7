"""`tailor submit`, `tailor status`, `tailor export`, `tailor scale`: the command line over
the REST API."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from cli.rest import ApiError, InvalidServer, TailorClient, Unreachable
from cli.support import fail, not_json, output_dir, parse_json, print_json, read_text
from core.states import TERMINAL_JOB

SERVER = typer.Option(
    "http://127.0.0.1:8000", "--server", envvar="TAILOR_SERVER", help="API base URL"
)
ADMIN_KEY = typer.Option(None, "--admin-key", envvar="TAILOR_ADMIN_KEY", help="admin Bearer key")


@contextmanager
def client(server: str, admin_key: str | None = None) -> Iterator[TailorClient]:
    """A REST client whose errors end the command with one line and exit code 2."""
    try:
        yield TailorClient(server, admin_key)
    except InvalidServer as exc:
        fail(f"--server {server!r} is not a valid URL: {exc}")
    except (ApiError, Unreachable) as exc:
        fail(str(exc))


def submit(
    spec_path: Path = typer.Argument(..., metavar="SPEC.yaml|json"),
    server: str = SERVER,
    admin_key: Optional[str] = ADMIN_KEY,
):
    """Submit a job spec; prints the new job's id."""
    import yaml

    text = read_text(spec_path)
    if spec_path.suffix == ".json":
        spec = parse_json(text, spec_path)
    else:
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            fail(f"{spec_path} is not valid YAML: {str(exc).splitlines()[0]}")
        except RecursionError:
            fail(f"{spec_path} is not valid YAML we can read: nested too deeply")
        except (ValueError, TypeError) as exc:  # PyYAML's constructors: a bad date, !!int abc
            fail(f"{spec_path} is not valid YAML we can read: {str(exc).splitlines()[0]:.200}")
    if spec is None:
        fail(f"{spec_path} is empty")
    if problem := not_json(spec):
        fail(f"{spec_path}: {problem}")
    with client(server, admin_key) as api:
        print_json(api.submit_job(spec))


def status(job_id: int = typer.Argument(...), server: str = SERVER):
    """A job's status, progress and current Pareto front."""
    with client(server) as api:
        job, front = api.job(job_id), api.pareto(job_id)
    print_json(
        {
            "id": job["id"],
            "name": job["name"],
            "status": job["status"],
            "generations": f"{job['generations_done']}/{job['generations_total']}",
            "evaluations": job["evaluations_done"],
            "error": job["error"],
            "pareto": [{"id": c["id"], "metrics": c["metrics"]} for c in front["candidates"]],
        }
    )


def export(
    job_id: int = typer.Argument(...),
    candidate_id: int = typer.Argument(...),
    out: Path = typer.Option(..., help="output directory"),
    precision: list[str] = typer.Option(
        ["float32"],
        help="variants wanted: float32, int8, int4 (repeat for several); "
        "downloaded when the search made them, else made here",
    ),
    server: str = SERVER,
    admin_key: Optional[str] = ADMIN_KEY,
):
    """Download a candidate: genome JSON, trained PyTorch weights and every ONNX graph the
    search made (float32 and quantized variants); the asked precisions that it did not make
    are exported here."""
    from core.precision import PRECISIONS, Variant

    bad = [p for p in precision if p not in PRECISIONS]
    if bad:
        fail(f"--precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
    names = []
    output_dir(out)
    with client(server, admin_key) as api:
        detail = api.candidate(job_id, candidate_id)
        (out / "genome.json").write_text(json.dumps(detail["genome"], indent=2))
        (out / "metrics.json").write_text(json.dumps(detail["metrics"], indent=2))
        for artifact in detail["artifacts"]:
            (out / artifact["name"]).write_bytes(api.download(artifact["url"]))
            names.append(artifact["name"])

    def made(p: str) -> bool:
        return any(
            n.startswith("decode.")
            and n.endswith(".onnx")
            and (
                Variant.from_tag(n[len("decode.") : -len(".onnx")]).precision == p
                if n != "decode.onnx"
                else p == "float32"
            )
            for n in names
        )

    wanted = [Variant(p) for p in dict.fromkeys(precision) if not made(p)]
    if wanted:
        try:
            from workers.export.variants import export_variants
            from workers.model.compiler import compile_genome
        except ImportError as exc:
            fail(
                f"the search did not export candidate {candidate_id} at "
                f"{', '.join(v.precision for v in wanted)}, and exporting it here "
                f"needs {exc.name}: pip install 'tailor[search]'"
            )

        model = compile_genome(detail["genome"], seed=0)
        if "weights.pt" in names:
            from cli.weights import load_problem, read_state_dict

            label = f"the server's weights.pt of candidate {candidate_id}"
            why = load_problem(model, read_state_dict(out / "weights.pt", label))
            if why:  # e.g. trained at its evaluation size, smaller than the genome
                typer.echo(
                    f"note: {label} does not fit the full-size graph ({why}); the graphs "
                    "exported here carry untrained weights",
                    err=True,
                )
        export_variants(detail["genome"], out, wanted, model=model)
        names += [p.name for p in out.iterdir() if p.is_file()]
    print_json({"out": str(out), "files": sorted(set(names) | {"genome.json", "metrics.json"})})


def scale(
    job_id: int = typer.Argument(..., help="a completed search job"),
    top: int = typer.Option(4, min=1, help="front members, lowest perplexity first"),
    width: Optional[int] = typer.Option(None, help="target width"),
    depth: Optional[int] = typer.Option(None, help="target number of LIV slots"),
    tokens: int = typer.Option(200_000, min=1000, help="training tokens per member"),
    presets: bool = typer.Option(
        True, "--presets/--no-presets", help="also scale the presets the job evaluated"
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="wait for the scale-up job and print "
        "the two rankings (an orchestrator must be running)",
    ),
    server: str = SERVER,
    admin_key: Optional[str] = ADMIN_KEY,
):
    """The scale-up check: train the job's best front members (and presets) at a larger size
    and compare the rankings (Kendall tau; who stays on the front). Prints the new job."""
    import time

    request = {
        "top": top,
        "width": width,
        "depth": depth,
        "tokens": tokens,
        "include_presets": presets,
    }
    with client(server, admin_key) as api:
        created = api.scale(job_id, {k: v for k, v in request.items() if v is not None})
        if not wait:
            print_json(created)
            return
        while (result := api.scale_result(created["id"]))["status"] not in TERMINAL_JOB:
            time.sleep(2.0)
    print_json(result)


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("export")(export)
    app.command("scale")(scale)
