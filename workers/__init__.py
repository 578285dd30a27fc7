"""Model side of Tailor: LIV operators, the genome compiler, static costs and ONNX export.

Pure compute behind Ray tasks: nothing here imports `api/` or `orchestrator/`. The catalog of
operators (`workers.liv.catalog`) and the static costs (`workers.model.costs`) import no torch,
so the API and the genome code can use them on a machine without PyTorch.
"""
