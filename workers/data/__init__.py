"""Training data: corpora (the built-in KJV text, or user files, read streaming), the
deterministic train/validation split, tokenizers, and the token cache (each corpus tokenized
once into memory-mapped shards that every training run reuses; `token_cache`).

    python -m workers.data prepare --data corpus.parquet --vocab-size 4096
"""
