"""Profiling agents: a small process beside a phone (or the host itself) that leases
profiling tasks from the API, runs the candidate's ONNX graphs and reports latency and
memory. Imports none of torch, Ray, `workers/`, `orchestrator/` or `api/`."""
