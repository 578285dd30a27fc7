"""The search on Ray: selection and the generation loop (`search/`), and the persistent
driver that runs one job from the database (`driver`, with `candidate_state`, `profiling`,
`records`, and the Ray evaluator in `ray_evaluator`). Uses `core`, `store` and `workers`.
"""
