"""The numeric bounds of the model and export tests hold on generic kernels too, not only on
the SIMD kernels of the CPU that runs the suite.

CI machines differ (AVX2 only, AVX-512, AVX-512 VNNI, AMX) and PyTorch and ONNX Runtime pick
their kernels by the CPU's instruction set, so each bound must hold on all of them. PyTorch
can be told to use its oldest vector code (`ATEN_CPU_CAPABILITY=default`), and MKL and oneDNN
below it capped to SSE4 (`MKL_ENABLE_INSTRUCTIONS`, `ONEDNN_MAX_CPU_ISA`): this runs the
bounded tests again that way, in one child process. ONNX Runtime's MLAS has no such switch
(it reads CPUID once); its int8 graphs are made so every x86 kernel computes the same integers
(7-bit weights: no saturation without VNNI, workers/export/quantize.py), which leaves float
rounding, the same ~1e-7 relative on every ISA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERIC_KERNELS = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
}
BOUNDED_TESTS = [
    "tests/workers/test_operators.py::test_step_by_step_decoding_reproduces_parallel_forward",
    "tests/workers/test_export.py::test_every_operator_exports_and_matches_torch",
    "tests/workers/test_quantize.py::test_every_preset_quantizes_and_decodes_like_it_prefills",
    "tests/workers/test_gpu_training.py::test_micro_batches_give_the_loss_of_one_batch",
]


@pytest.fixture(scope="module")
def generic_env() -> dict[str, str]:
    """The environment that makes PyTorch use its oldest vector code (checked once)."""
    env = {**os.environ, **GENERIC_KERNELS}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == "DEFAULT", probe.stdout + probe.stderr
    return env


# One child per bounded test, so the suite's workers share them out (together they are the
# suite's longest item, ~3 minutes, which one worker used to carry alone).
@pytest.mark.parametrize("bounded", BOUNDED_TESTS, ids=lambda t: t.rsplit("::", 1)[1])
def test_the_bounded_tests_pass_on_generic_kernels(generic_env, bounded):
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", bounded],
        cwd=ROOT,
        env=generic_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
