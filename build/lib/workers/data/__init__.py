"""Training data: corpora (the built-in KJV text, or user files), the deterministic
train/validation split, and tokenizers cached on disk."""
