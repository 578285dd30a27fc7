"""How `bench.inference` shows a result: the plot (inference.png) and the README's tables."""

from __future__ import annotations

from pathlib import Path

from bench.inference_export import ARCHS


def plot(result: dict, path: Path) -> None:
    """Prefill latency, decode latency and prefill peak against L, a curve per model and
    variant, on log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = result["lengths"]
    variants = result["variants"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    styles = dict(zip(variants, ["-", "--", ":", "-.", (0, (5, 1))]))
    for ax, (metric, label) in zip(
        axes,
        [
            ("prefill_ms", "prefill latency (ms)"),
            ("decode_ms", "decode latency per token (ms)"),
            ("peak_prefill_mb", "prefill peak memory (MiB)"),
        ],
    ):
        for arch, colour in zip(ARCHS, ("C0", "C1")):
            for variant in variants:
                ax.plot(
                    lengths,
                    [result["rows"][str(L)][arch][variant][metric] for L in lengths],
                    marker="o",
                    markersize=3,
                    linestyle=styles[variant],
                    color=colour,
                    label=f"{arch} {variant}",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("L (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(
        f"hyena-edge vs transformer++ ({result['params']['transformer++']:,} vs "
        f"{result['params']['hyena-edge']:,} params), onnxruntime CPU, "
        f"{result['threads']} thread(s), per precision and attention export"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _mib(row: dict, key: str) -> str:
    """A MiB column that results from before the runner read the idle footprint lack."""
    return f"{row[key]:.1f}" if row.get(key) is not None else "–"


def markdown(result: dict) -> str:
    """The README tables, from a result."""
    lines = []
    variants = result["variants"]
    lines.append(
        "| L | variant | prefill ms (T / H) | decode ms (T / H) | peak MiB prefill "
        "(T / H) | idle MiB (T / H) | prefill above idle MiB (T / H) | decode/bound (T / H) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for L in result["lengths"]:
        for variant in variants:
            t, h = (result["rows"][str(L)][a][variant] for a in ARCHS)
            lines.append(
                f"| {L} | {variant} | {t['prefill_ms']:.3g} / {h['prefill_ms']:.3g} | "
                f"{t['decode_ms']:.3g} / {h['decode_ms']:.3g} | "
                f"{t['peak_prefill_mb']:.0f} / {h['peak_prefill_mb']:.0f} | "
                f"{_mib(t, 'idle_prefill_mb')} / {_mib(h, 'idle_prefill_mb')} | "
                f"{_mib(t, 'prefill_above_idle_mb')} / {_mib(h, 'prefill_above_idle_mb')} | "
                f"{t['decode_over_bound']:.1f} / {h['decode_over_bound']:.1f} |"
            )
    lines.append("")
    lines.append("| model | " + " | ".join(f"{v} MB" for v in variants) + " |")
    lines.append("|---|" + "---|" * len(variants))
    for arch in ARCHS:
        lines.append(
            f"| {arch} | "
            + " | ".join(f"{result['model_bytes'][arch][v] / 1e6:.1f}" for v in variants)
            + " |"
        )
    if result.get("perplexity"):
        lines.append("")
        lines.append(
            "| model | tokens trained | " + " | ".join(f"perplexity {v}" for v in variants) + " |"
        )
        lines.append("|---|---|" + "---|" * len(variants))
        for arch in ARCHS:
            q = result["perplexity"][arch]
            lines.append(
                f"| {arch} | {q['tokens_trained']:,} | "
                + " | ".join(f"{q[v]:.2f}" if v in q else "" for v in variants)
                + " |"
            )
    return "\n".join(lines)
