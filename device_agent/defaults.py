"""The agent's defaults that the CLI shows and the backends use: one place, and light to
import (the CLI's help must not load adb-shell or onnxruntime)."""

DEFAULT_RUNNER = "/data/local/tmp/onnxruntime_perf_test"
WORK_ROOT = "/data/local/tmp/tailor"  # graphs and inputs on the phone
ADB_TIMEOUT_S = 30.0  # silence on the ADB link before the phone counts as gone
AUTH_TIMEOUT_S = 120.0  # one wait for "Allow" on the phone
MIN_FREE_MB = 200.0  # free storage the phone needs under WORK_ROOT
ALIVE_EVERY_S = 2  # the phone's keep-alive line while a runner works (< ADB timeout)
