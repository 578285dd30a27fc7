"""Training workers: a short, reproducible training run that returns validation perplexity.

`evaluate_quality(genome, config)` is a pure function a Ray task can call: everything it needs
is in its arguments, everything it produces is in the returned record, and a diverging or
over-budget run comes back as a failed record with a reason instead of an exception.
"""
