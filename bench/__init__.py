"""Benchmarks: each module prints ratios measured side by side in one run and writes
`bench/results/NAME.json`. `python -m bench` runs every one of them."""
