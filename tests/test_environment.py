"""A run records where it computed (``results.json``'s ``environment``), and ``kernel_isa`` tells runs apart
that the same config and seed would make differ: another CPU kernel tier or pinned kernels."""

from __future__ import annotations

import pytest
import torch

from blocksft.evaluation.environment import cpu_info, cpu_tier, environment, kernel_isa
from blocksft.folders import read_json

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""


def test_cpu_info_reads_the_name_and_the_isa_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu_info(str(path)) == ("Intel(R) Xeon(R) Processor", ["avx2", "avx512f", "avx512_vnni", "amx_tile"])


def test_cpu_info_without_the_file_gives_no_flags(tmp_path):
    name, flags = cpu_info(str(tmp_path / "missing"))
    assert flags == [] and isinstance(name, str)


@pytest.mark.parametrize(
    ("flags", "tier"),
    [(["avx2", "avx512f", "amx_tile"], "AMX"), (["avx2", "avx512f"], "AVX512"), (["avx2"], "AVX2"), ([], "baseline")],
)
def test_the_cpu_tier_is_the_highest_flag(flags, tier):
    assert cpu_tier(flags) == tier


def test_pinned_kernels_are_another_key():
    assert kernel_isa("AVX512", "AMX", {}) == "AVX512/AMX"
    pinned = kernel_isa("AVX2", "AMX", {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    assert pinned == "AVX2/AMX pinned ATEN_CPU_CAPABILITY=avx2,MKL_CBWR=AVX2"


def test_environment_names_versions_device_and_kernels(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    record = environment("cpu")
    assert record["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert record["device"] == "cpu" and record["cuda"] is None
    assert record["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["kernel_pins"] == {"MKL_CBWR": "AVX2"}
    assert record["kernel_isa"].startswith(torch.backends.cpu.get_cpu_capability() + "/")
    assert record["kernel_isa"].endswith("pinned MKL_CBWR=AVX2")
    assert {"transformers", "lightning", "python", "torch_threads", "cpu", "cpu_flags"} <= set(record)


def test_a_run_records_its_environment(smoke_run):
    record = read_json(smoke_run / "results.json")["environment"]
    assert record["device"] == "cpu"
    assert record["kernel_isa"].split("/")[0] == torch.backends.cpu.get_cpu_capability()
    assert record["lightning"] and record["transformers"]
