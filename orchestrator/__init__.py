"""Search side of Tailor: the genome, the evolutionary search on Ray, and the `tailor` CLI.

`orchestrator.genome` is pure Python (no torch, no Ray) so the API can validate genomes and
search spaces while the cluster is down.
"""
