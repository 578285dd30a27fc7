"""Tokenize a corpus into the token cache ahead of a search (optional: the first training
run builds it otherwise), and print what the entry holds.

    python -m workers.data prepare --data corpus.jsonl [--text-field text] \\
        [--tokenizer bpe --vocab-size 4096] [--val-fraction 0.05] [--cache DIR] [--quiet]
    python -m workers.data prepare --job job.yaml     # the job spec's training block
"""

from __future__ import annotations

import argparse
import json
import sys

from core.training import TrainConfig


def _config_from_job(path: str) -> TrainConfig:
    text = open(path, encoding="utf-8").read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        spec = yaml.safe_load(text)
    else:
        spec = json.loads(text)
    return TrainConfig.model_validate(spec.get("training", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.data", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="build (or find) the token cache entry")
    prep.add_argument("--job", help="a job spec (YAML or JSON): use its training block")
    prep.add_argument(
        "--data",
        help="corpus path (.txt, .jsonl, .parquet, a saved dataset "
        "directory); default: the built-in KJV",
    )
    prep.add_argument("--text-field", default=None)
    prep.add_argument("--tokenizer", choices=["bpe", "byte"], default=None)
    prep.add_argument("--vocab-size", type=int, default=None)
    prep.add_argument("--val-fraction", type=float, default=None)
    prep.add_argument(
        "--sample-bytes", type=int, default=None, help="text the BPE trains on, at most"
    )
    prep.add_argument(
        "--cache",
        default=None,
        help="token cache folder (default: $TAILOR_TOKEN_CACHE, else ~/.cache/tailor/tokens)",
    )
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    config = _config_from_job(args.job) if args.job else TrainConfig()
    update: dict = {}
    for name, key in (
        ("data", "data"),
        ("text_field", "text_field"),
        ("val_fraction", "val_fraction"),
        ("cache", "token_cache"),
    ):
        if getattr(args, name) is not None:
            update[key] = getattr(args, name)
    tokenizer = config.tokenizer.model_dump()
    for name, key in (
        ("tokenizer", "kind"),
        ("vocab_size", "vocab_size"),
        ("sample_bytes", "sample_bytes"),
    ):
        if getattr(args, name) is not None:
            tokenizer[key] = getattr(args, name)
    config = TrainConfig.model_validate({**config.model_dump(), **update, "tokenizer": tokenizer})

    from workers.data.token_cache import prepare_for  # no torch: a data box needs none

    prepared = prepare_for(config, progress=not args.quiet)
    print(
        json.dumps(
            {
                **prepared.report(),
                "split": prepared.split.describe(),
                "tokenizer": {k: v for k, v in prepared.tokenizer.identity.items() if k != "path"},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
