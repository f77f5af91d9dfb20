"""benchmarks/no_amx.py: a command run under it is refused AMX (so ONNX Runtime and oneDNN fall back to AVX-512 /
VNNI kernels, and fast mode keeps its symmetric int8 model), and nothing else is refused."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from shelf.recognition import backends

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("from shelf.recognition import backends; from benchmarks.roofline import this_cpu; import os; "
         "print(backends.amx_granted(), backends.has_amx_int8(), this_cpu().amx_refused, os.getpid() > 0)")

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                                reason="AMX permission is a Linux x86-64 system call")


def run(*prefix: str) -> list[str]:
    out = subprocess.run([*prefix, sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_under_no_amx_the_tiles_are_refused_and_everything_else_works():
    granted, amx_int8, refused, pid_ok = run(sys.executable, "-m", "benchmarks.no_amx")
    assert (granted, amx_int8, pid_ok) == ("False", "False", "True")
    assert refused == str("amx_tile" in Path("/proc/cpuinfo").read_text().split())


def test_without_it_the_tiles_are_granted_where_the_cpu_lists_them():
    listed = "amx_tile" in Path("/proc/cpuinfo").read_text().split()
    granted, amx_int8, refused, _ = run()
    assert granted == str(listed) and refused == "False"
    assert amx_int8 == str("amx_int8" in Path("/proc/cpuinfo").read_text().split())


def test_a_refused_cpu_runs_the_copy_with_symmetric_weights(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper
    int8 = tmp_path / backends.INT8_FILE
    value = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["out"])], "g", [value],
                                                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])),
              str(int8))
    monkeypatch.setattr(backends, "amx_granted", lambda: False)
    monkeypatch.setattr(backends, "quantised_input_copy", lambda model: True)  # the rewrite: tests/test_backends.py
    monkeypatch.setattr(backends, "shift_weight_zero_points", lambda model: pytest.fail("shifted for AMX tiles"))
    assert backends.int8_for_this_cpu(int8) == tmp_path / backends.INT8_RUN_FILE
    assert not (tmp_path / backends.INT8_AMX_FILE).exists()


def test_the_filter_turns_on_no_speculation_mitigation_that_would_slow_the_command():
    def mitigation(*prefix: str) -> str:
        status = subprocess.run([*prefix, "cat", "/proc/self/status"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout
        return next((line for line in status.splitlines() if line.startswith("Speculation_Store_Bypass")), "")
    assert mitigation(sys.executable, "-m", "benchmarks.no_amx") == mitigation()
