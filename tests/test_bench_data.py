"""experiments/bench_data.py on a few hundred rows: structure only (no timing assertions)."""

from __future__ import annotations

import json
import random

from experiments import bench_data


def test_synthetic_rows_have_the_metamathqa_schema_and_answers():
    rng = random.Random(0)
    for kind in bench_data.TYPE_COUNTS:
        row = bench_data.synthetic_row(rng, kind)
        assert set(row) == {"query", "response", "type", "original_question"} and row["type"] == kind
        assert "\nThe answer is: " in row["response"]
        assert ("\n#### " in row["response"]) == kind.startswith("GSM")
    assert sum(bench_data.TYPE_COUNTS.values()) == 395_000


def test_run_reports_a_cold_and_a_cached_run(tmp_path):
    report = bench_data.run(rows=300, num_proc=1, workdir=tmp_path, isolate=False)
    assert report["rows"] == 300 and report["cache_reused"] is True
    for name in ("cold", "cached"):
        figures = report[name]
        assert figures["rows_per_second"] > 0 and figures["peak_rss_mb"] > 0
        assert figures["train_rows"] + figures["eval_rows"] + sum(figures["dropped"].values()) == 300
    assert report["cold"]["cache_reused"] is False and report["cached"]["train_rows"] == report["cold"]["train_rows"]
    table = bench_data.markdown(report)
    assert "| cold |" in table and "| cached |" in table


def test_cli_writes_json_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench_data.main(["--rows", "120", "--num-proc", "1", "--workdir", str(tmp_path), "--no-isolate", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == 120
    assert "rows/s" in capsys.readouterr().out
