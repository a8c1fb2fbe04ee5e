import json
import multiprocessing as mp
import warnings

import pytest

from gapbench.results import CorruptRecord, append_curve, append_run, flatten, load_curves, load_runs, read_run


def _row(run_id, **kw):
    return {"run_id": run_id, "task": "copy", "cell": "lstm", "gap": 10, "seed": 0, "status": "finished",
            "score": 0.5, **kw}


def test_roundtrip_and_columns(tmp_path):
    append_run(tmp_path, _row("a", **flatten({"cell": {"hidden_size": 8}})))
    append_run(tmp_path, _row("b", score=float("nan")))
    df = load_runs(tmp_path)
    assert sorted(df.run_id) == ["a", "b"]
    for col in ["run_id", "sweep_id", "task", "cell", "gap", "seed", "status", "steps", "wall_s",
                "score_name", "score", "test_loss", "baseline", "cfg.cell.hidden_size"]:
        assert col in df.columns
    assert df.attrs["corrupt"] == []


def test_empty_or_missing_store(tmp_path):
    df = load_runs(tmp_path / "nothing-here")
    assert len(df) == 0 and "score" in df.columns


def test_rerun_replaces_but_keeps_the_old_row(tmp_path):
    append_run(tmp_path, _row("a", score=0.1))
    append_run(tmp_path, _row("a", score=0.9))
    df = load_runs(tmp_path)
    assert len(df) == 1 and df.score[0] == 0.9
    kept = list((tmp_path / "runs" / "replaced").glob("a.*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["score"] == 0.1


def test_corrupt_record_reported_and_skipped(tmp_path):
    append_run(tmp_path, _row("good"))
    torn = tmp_path / "runs" / "torn.json"
    torn.write_text('{"run_id": "torn", "sco')
    (tmp_path / "runs" / "other.json").write_text("[1, 2]")
    with pytest.warns(CorruptRecord) as caught:
        df = load_runs(tmp_path)
    assert sorted(str(w.message).split("/")[-1].split(":")[0] for w in caught) == ["other.json", "torn.json"]
    assert list(df.run_id) == ["good"]
    assert sorted(p.rsplit("/", 1)[1] for p in df.attrs["corrupt"]) == ["other.json", "torn.json"]
    with pytest.warns(CorruptRecord):
        assert read_run(tmp_path, "torn") is None


def _writer(results_dir, worker, n):
    for i in range(n):
        append_run(results_dir, _row(f"w{worker}-{i}", payload="x" * 2000))


def test_parallel_writers_lose_nothing(tmp_path):
    """8 processes x 100 rows -> exactly 800 readable rows, no partial record ever visible."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 100)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRecord)
        df = load_runs(tmp_path)
    assert len(df) == 800 and df.run_id.is_unique
    assert not list((tmp_path / "runs").glob(".*.tmp")), "no temporary files left behind"


def test_curves_roundtrip(tmp_path):
    append_curve(tmp_path, "r1", [{"run_id": "r1", "t": t, "grad_norm": 1.0 / (t + 1)} for t in range(5)])
    curves = load_curves(tmp_path)
    assert len(curves) == 5 and curves.grad_norm.iloc[0] == 1.0
    assert len(load_curves(tmp_path / "none")) == 0
