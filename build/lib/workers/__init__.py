"""Model side of Tailor: LIV modules, the genome compiler, the trainer, MAD and ONNX export.

Pure compute behind Ray tasks, on `core` only (genomes are `core.Genome`, the operator
catalog and the exact static costs live in `core`); nothing here imports `store`, `api`,
`orchestrator` or `device_agent`.
"""
