"""experiments/diagnostics/kernel_bytes.py: the comparison of AVX2-pinned runs across machine kinds."""

from __future__ import annotations

from experiments.diagnostics.kernel_bytes import PINS, compare


def record(steps: int, pinned: str) -> dict:
    return {"steps": steps, "runs": {"own_kernels": {"export_sha256": "x"}, "avx2_pinned": {"export_sha256": pinned}}}


def test_pinned_runs_of_two_machine_kinds_are_compared():
    assert compare({"AVX512_AMX": record(150, "a"), "AVX2_AVX2": record(150, "a")}) == [
        "AVX2_AVX2 vs AVX512_AMX: AVX2-pinned weights identical"
    ]
    assert compare({"AVX512_AMX": record(150, "a"), "AVX2_AVX2": record(150, "b")}) == [
        "AVX2_AVX2 vs AVX512_AMX: AVX2-pinned weights differ"
    ]
    assert compare({"a": record(150, "a"), "b": record(100, "a")}) == ["a vs b: different step counts, not comparable"]


def test_the_pins_cap_every_kernel_library_at_avx2():
    assert set(PINS) == {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"}
