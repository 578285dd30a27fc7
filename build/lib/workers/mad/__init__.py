"""MAD-style synthetic proxies (Poli et al. 2024, arXiv 2403.17844): cheap quality signals.

Six token-manipulation tasks whose scores track perplexity at scale; a reduced difficulty
grid so one architecture is scored in about a minute on one CPU core at small width.
"""
