"""Smoke test of the benchmark on tiny sizes: it runs, every cell gets a row, the JSON is complete.
No timing assertions (timings on a shared CI machine mean nothing)."""
import json

import pytest
import torch

from gapbench.perf import bench
from gapbench import cells
from gapbench.cells import _bptt


def test_quick_run_on_tiny_sizes_writes_every_cell(tmp_path, capsys):
    path = tmp_path / "bench.json"
    result = bench.run(["--quick", "--batch", "3", "--hidden", "8", "--time", "4", "--repeats", "2",
                        "--device", "cpu", "--threads", "1", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    expected = [bench.label(n, o) for n, o in bench.runs_for(cells.names(), "bptt")]
    assert [r["label"] for r in rows] == expected  # every registered model, each with its own bench_runs
    assert [r["cell"] for r in rows] == [n for n in cells.names() for _ in cells.cell_class(n).bench_runs()]
    for r in rows:
        assert r["batch"] == 3 and r["hidden"] == 8 and r["time"] == 4
        assert r["seconds"] > 0 and len(r["seconds_all"]) == 2
        assert r["tokens_per_s"] == pytest.approx(3 * 4 / r["seconds"])
        assert r["gflops"] > 0 and r["frac_of_dense"] > 0
        assert r["fused"] == cells.cell_class(r["cell"]).fused
    assert next(r for r in rows if r["cell"] == "lstm")["ratio_to_lstm"] == 1.0
    assert result["meta"]["device"] == "cpu" and result["configs"][0]["dense_gflops"]
    out = capsys.readouterr().out
    assert "x lstm" in out and all(r["label"] in out for r in rows)


def test_options_reach_the_cells_and_are_undone():
    threads = torch.get_num_threads()
    result = bench.run(["--cells", "gru_cho", "--batch", "2", "--hidden", "4", "--time", "3", "--repeats", "1",
                        "--warmup", "0", "--device", "cpu", "--impl", "autograd", "--no-onednn",
                        "--no-input-grad", "--dtype", "float64", "--threads", "1"])
    assert [r["cell"] for r in result["rows"]] == ["lstm", "gru_cho"]  # lstm is always the reference
    assert result["meta"]["impl"] == "autograd" and not result["meta"]["onednn_matmuls"]
    assert result["meta"]["dtype"] == "float64" and not result["meta"]["input_grad"]
    assert result["meta"]["threads"] == 1
    assert torch.get_num_threads() == threads and _bptt.USE_ONEDNN  # process state restored


def test_flop_count():
    # lstm, B=2, T=3, I=5, H=7: forward 2*B*T*(I*4H + H*4H), backward twice that
    assert bench.matmul_flops("lstm", 2, 3, 5, 7) == 3 * 2 * 2 * 3 * (5 * 28 + 7 * 28)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    out = capsys.readouterr().out
    for opt in ("--quick", "--json", "--device", "--hidden", "--time", "--batch", "--threads"):
        assert opt in out


def test_overhead_interleaves_job_and_bare_steps():
    from gapbench.perf import overhead

    result = overhead.main(["--steps", "12", "--warmup", "3", "--repeats", "2",
                            "cell.hidden_size=8", "gap=3", "logger=none", "threads=1"])
    assert result["steps"] == 12 and len(result["ratios"]) == 2
    assert result["job_ms_per_step"] > 0 and result["bare_ms_per_step"] > 0
    assert result["overhead_ratio"] == pytest.approx(result["job_ms_per_step"] / result["bare_ms_per_step"])
    assert 0 < result["batch_gen_share"] < 1
    assert result["ratios"] == sorted(result["ratios"]) and round(result["overhead_ratio"], 4) == result["ratios"][1]


def test_bench_reports_overhead(monkeypatch, capsys):
    from gapbench.perf import overhead

    real = overhead.measure_overhead
    monkeypatch.setattr(overhead, "measure_overhead", lambda overrides, steps, repeats: real(
        ["cell.hidden_size=8", "gap=3", "logger=none", "threads=1"], steps=steps, warmup=2, repeats=1))
    result = bench.run(["--cells", "lstm", "--batch", "2", "--hidden", "4", "--time", "3", "--repeats", "1",
                        "--device", "cpu", "--threads", "1", "--overhead", "--overhead-steps", "5"])
    assert result["overhead"]["steps"] == 5
    assert "framework overhead" in capsys.readouterr().out


def test_thread_scaling_bound_covers_every_job_of_the_sweep():
    from gapbench.perf import overhead

    b = overhead.thread_scaling(["cell=lstm,gru", "gap=3", "cell.hidden_size=8", "trainer.max_steps=7"],
                                seconds=0.02, repeats=1)
    assert [j["job"].split()[0] for j in b["jobs"]] == ["cell=lstm", "cell=gru"]
    cores = b["cores"]
    serial = sum(7 * j[f"ms_{cores}_threads"] for j in b["jobs"])
    assert b["best_parallel_ratio"] == pytest.approx(sum(7 * j["ms_1_thread"] for j in b["jobs"]) / cores / serial)


def test_null_test_runs_the_clock_on_two_bare_loops():
    from gapbench.perf import overhead

    r = overhead.main(["--null", "--steps", "10", "--warmup", "2", "cell.hidden_size=8", "gap=3", "threads=1"])
    assert r["null_test"] and r["steps"] == 10 and r["job_ms_per_step"] > 0 and r["bare_ms_per_step"] > 0
