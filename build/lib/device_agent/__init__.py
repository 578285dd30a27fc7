"""Profiling agents: a small process beside a phone (or the host itself) that leases
profiling tasks from the API, runs the candidate's ONNX graphs and reports latency and
memory. Uses `core` (the wire protocol and the manifest) only: no torch, Ray, FastAPI or
SQLAlchemy, so `pip install .` without extras is enough on a laptop beside a phone."""
