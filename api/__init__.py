"""The HTTP surface of Tailor and its database: jobs, results, devices, profiling tasks.

Imports neither torch nor Ray, so it keeps serving while the cluster is down. The schema
comes from Alembic migrations (`api/migrations`); `api.storage` is the storage layer the
orchestrator also uses, one transaction per call.
"""
