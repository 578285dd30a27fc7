"""The HTTP surface of Tailor: the FastAPI app, its routes, auth and the dashboard.

Uses `core` (job spec, wire protocol, catalog) and `store` (the database); imports neither
torch nor Ray, so it keeps serving while the cluster is down.
"""
