"""`gsrepro.registry`, `gsrepro.protocols`, `gsrepro.tables`: the run hash, the registry (a run is trained once and reused, partial runs resume,
two processes asking for one run train it once, broken runs are repaired and say why), protocols, and the table writer, on a tiny SynthFF
with one-epoch runs."""
import json
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from gsrepro.checkpoint import load_checkpoint
from gsrepro.config import TrainConfig
from gsrepro.core import load_json
from gsrepro.protocols import RUNNER_FIELDS, TABLE_COLUMNS, Benchmark, Experiments, report_runs
from gsrepro.reports import REPORTS, VARIANT_FIELDS, Report, cell_specs, get_report, register_report, unregister_report
from gsrepro.registry import check_registry, get_run, read_registry, run_hash
from gsrepro.synth import ensure_synthff
from gsrepro.tables import paper_rows, write_table
from gsrepro.paper import paper_table
from gsrepro.testing import together

TINY_SYNTH = dict(n_pairs=8, image_size=32, frames=2, qualities=("c23",), celebdf_real=4, dfdc_pairs=2)
TINY_TRAIN = dict(epochs=1, image_size=32, batch_size=16, queue_size=64, n_clusters=4, adbm_k=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ensure_synthff(tmp_path_factory.mktemp("exp") / "synth", **TINY_SYNTH)


def test_hash_is_stable_and_ignores_runtime(data):
    cfg = TrainConfig.from_preset("mini", data=str(data), loss="gs", **TINY_TRAIN)
    assert run_hash(cfg) == run_hash(cfg.replace(device="cuda", num_workers=3, progress=False, cluster_cache="/x"))
    assert run_hash(cfg) == run_hash(cfg.replace(theta=120))                   # int from a command line = float
    assert run_hash(cfg) != run_hash(cfg.replace(theta=100.0))
    ce2 = cfg.replace(loss="ce2")
    assert run_hash(ce2) == run_hash(ce2.replace(theta=100.0, use_push=False))  # GS knobs cannot change a CE-2 run
    assert run_hash(cfg) != run_hash(cfg.replace(seed=1))


def test_registry_trains_once_and_reuses(data, tmp_path):
    cfg = TrainConfig.from_preset("mini", data=str(data), dataset="synthff", loss="ce2", progress=False,
                                  cluster_cache=str(tmp_path / "clusters"), **TINY_TRAIN)
    first = get_run(cfg, {"hq": dict(dataset="synthff", quality="c23")}, tmp_path, bootstrap=20)
    again = get_run(cfg.replace(theta=90.0), {"hq": dict(dataset="synthff", quality="c23"),
                                              "dfdc": dict(dataset="synth-dfdc")}, tmp_path, bootstrap=20)
    assert (first.action, again.action) == ("trained", "reused") and first.hash == again.hash
    assert first.metrics["hq"] == again.metrics["hq"]                           # not re-scored
    log = read_registry(tmp_path)
    assert log.action.tolist() == ["trained", "reused"] and log.evaluated.tolist() == ["hq", "dfdc"]
    assert check_registry(tmp_path).loc[first.hash, "trained"] == 1
    (first.dir / "train.json").unlink()                                         # a partial run resumes, never restarts
    assert get_run(cfg, None, tmp_path).action == "resumed"
    assert check_registry(tmp_path).loc[first.hash].tolist() == [1, 1, 1, 0]      # trained, resumed, reused, retrained


def test_two_processes_ask_for_one_run(data, tmp_path):
    """Two processes asking the registry for the same config at the same moment used to both train it (and
    `check_registry` then failed): the second now waits on the run's lock, then reuses what the first trained."""
    cfg = TrainConfig.from_preset("mini", data=str(data), dataset="synthff", loss="ce2", progress=False, **TINY_TRAIN)
    setup = ("import json\nfrom gsrepro.config import TrainConfig\nfrom gsrepro.registry import get_run\n"
             f"cfg = TrainConfig.from_dict(json.loads({json.dumps(cfg.to_dict())!r}))")
    action = (f"run = get_run(cfg, {{'hq': dict(dataset='synthff', quality='c23')}}, {str(tmp_path / 'runs')!r}, bootstrap=20)\n"
              "print(json.dumps(dict(action=run.action, note=run.note, auc=run.metric('hq'))))")
    results = together([(setup, action)] * 2, tmp_path)
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    runs = [json.loads(out.splitlines()[-1]) for _, out, _ in results]
    assert sorted(r["action"] for r in runs) == ["reused", "trained"]
    assert runs[0]["auc"] == runs[1]["auc"]
    waited = next(r for r in runs if r["action"] == "reused")["note"]
    assert waited.startswith("waited ") and f"on {os.uname().nodename}" in waited
    log = read_registry(tmp_path / "runs")
    assert log.action.tolist() == ["trained", "reused"] and log.evaluated.tolist() == ["hq", "-"]
    assert log.note.tolist() == ["-", waited]
    assert check_registry(tmp_path / "runs").loc[run_hash(cfg)].tolist() == [1, 0, 1, 0]


def test_broken_runs_are_repaired_and_say_why(data, tmp_path):
    """A run folder with a truncated best.pt used to be reused as complete: it is now restored from the checkpoint
    (the checkpoint holds the best epoch) or, with the checkpoint truncated too, trained again; the call warns and the
    log says why. A truncated metrics.json is scored again, a run_key.json that is not a JSON object rewritten."""
    cfg = TrainConfig.from_preset("mini", data=str(data), dataset="synthff", loss="ce2", progress=False, **TINY_TRAIN)
    hq = {"hq": dict(dataset="synthff", quality="c23")}
    run = get_run(cfg, hq, tmp_path, bootstrap=20)
    (run.dir / "best.pt").write_bytes((run.dir / "best.pt").read_bytes()[:4096])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = get_run(cfg, hq, tmp_path, bootstrap=20)
    said = [str(w.message) for w in caught]
    assert any(m.startswith(f"run {run.hash} in {tmp_path} is incomplete: best.pt unreadable (") and "truncated" in m
               and m.endswith("; training it again") for m in said), said
    assert any(m.endswith("rewritten from checkpoint.pt (epoch 1, the best one)") for m in said), said
    assert again.action == "resumed" and again.note.startswith("incomplete: best.pt unreadable (")
    assert load_checkpoint(run.dir / "best.pt")["epoch"] == 1 and again.metrics == run.metrics
    for name in ("best.pt", "checkpoint.pt"): (run.dir / name).write_bytes(b"\0" * 100)
    (run.dir / "config.json").write_text('{"loss": "ce')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        retrained = get_run(cfg, hq, tmp_path, bootstrap=20)
    assert retrained.action == "retrained"
    assert "config.json unreadable" in retrained.note and "started over: " in retrained.note
    assert any("again from the start" in str(w.message) for w in caught)
    assert retrained.metrics["hq"]["auc"] == pytest.approx(run.metrics["hq"]["auc"])      # deterministic training
    (run.dir / "metrics.json").write_text('{"hq": {"auc": 0.')
    (run.dir / "run_key.json").write_text('"not an object"')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert get_run(cfg, hq, tmp_path, bootstrap=20).action == "reused"
    assert {"metrics.json", "run_key.json"} <= {Path(str(w.message).split(" ")[0]).name for w in caught}
    assert load_json(run.dir / "metrics.json")["hq"]["auc"] == retrained.metrics["hq"]["auc"]
    assert load_json(run.dir / "run_key.json")["summary"].startswith("loss=ce2")
    log = read_registry(tmp_path)
    assert log.action.tolist() == ["trained", "resumed", "retrained", "reused"]
    assert log.evaluated.tolist() == ["hq", "-", "hq", "hq"]
    assert check_registry(tmp_path).loc[run.hash].tolist() == [1, 1, 1, 1]


def test_shared_runs_and_tables(data, tmp_path):
    bench = Benchmark("SynthFF-tiny", str(data))
    exp = Experiments("mini", bench, tmp_path / "runs", seeds=[0], bootstrap=20, workers=1, overrides=TINY_TRAIN)
    rows = exp.measure_many(cell_specs({"CE-2": ["FF++-HQ", "CelebDF", "DFDC"], "Ours": ["CelebDF"]}, metrics=["auc"]))
    assert rows.groupby("method").runs.nunique().to_dict() == {"CE-2": 1, "Ours": 1}   # one run serves three columns
    assert set(rows.source) == {"SynthFF-tiny"} and rows.value.between(0, 100).all()
    exp.measure_many(cell_specs({"CE-2": ["CelebDF"]}, metrics=["acc"]))        # another table asks: reused
    assert read_registry(tmp_path / "runs").action.tolist().count("trained") == 2
    table = pd.concat([paper_rows(paper_table(2), columns=["CelebDF", "DFDC"]), rows])
    write_table(table, "t", tmp_path / "out", "caption", ["a note"])
    back = pd.read_csv(tmp_path / "out/t.csv", keep_default_na=False)
    assert list(back.columns) == list(TABLE_COLUMNS)
    assert set(back.source) == {"paper", "SynthFF-tiny"}
    assert (back[back.source == "paper"].quoted_from != "").sum() == 2 * 12     # the quoted prior rows stay marked
    md = (tmp_path / "out/t.md").read_text()
    assert "| Ours" in md and "SynthFF-tiny" in md and "† quoted by the paper" in md and "- a note" in md


def test_protocols():
    b = Benchmark("x", "m.csv")
    assert b.protocol("NT-LQ") == (dict(methods=["DF", "F2F", "FS"], quality="c40"), "synthff-c40-NT",
                                   dict(dataset="synthff", quality="c40", methods=["NT"]))
    with pytest.raises(ValueError, match="unknown column"):
        b.protocol("FF++-XQ")


# a valid value of every config field other than the mini preset's (a new field must be added here: the test below checks)
OTHER = dict(data="elsewhere.csv", dataset="ffpp", methods=["DF", "F2F"], quality="c40", image_size=48, frames_per_video=3,
             val_frames_per_video=3, augment=True, balanced=False, backbone="mini", pretrained=True, proj_dim=64, drop_rate=0.1,
             bn="local", classifier_input="z", loss="ce2", use_guide=False, use_push=False, use_pull=False, use_adbm=False,
             theta=100.0, guide_solver="lagrangian", guide_form="contrast", tau=0.1, pull_negatives="other_class", lambda_guide=0.5,
             lambda_push=0.5, lambda_pull=0.5, queue_size=512, adbm_k=20, adbm_start_epoch=5, adbm_ref_epochs=30, adbm_alpha_real=0.8,
             adbm_alpha_forgery=0.4, adbm_temperature=2.0, adbm_balance="class", n_clusters=16, n_pull=5, n_push=5, simmim="synth",
             cluster_cache="/tmp/clusters", epochs=2, batch_size=16, lr=1e-4, weight_decay=0.0, lr_schedule="cosine", seed=1,
             device="cpu", amp="bf16", channels_last=False, num_workers=1, progress=True, weights_cache="/tmp/weights",
             decode_cache_mb=64)


@pytest.mark.parametrize("report", [name for name, r in REPORTS.items() if r.specs])
def test_every_set_reaches_every_run_or_is_refused(report, data, tmp_path):
    "`--set FIELD=VALUE` of every config field, report by report: every planned run has the value, or one line names the report and the field."
    import dataclasses
    assert set(OTHER) == {f.name for f in dataclasses.fields(TrainConfig)}
    bench, refused = Benchmark("SynthFF-tiny", str(data)), set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                      # e.g. A-DBM never starting in a 2-epoch run
        for name, value in OTHER.items():
            assert value != getattr(TrainConfig.from_preset("mini", progress=False), name), name   # Experiments: progress off
            if name in RUNNER_FIELDS:
                with pytest.raises(ValueError, match=f"--set {name}: the runner sets {name}; use --"):
                    Experiments("mini", bench, tmp_path, seeds=[0], overrides={name: value})
                continue
            exp = Experiments("mini", bench, tmp_path, seeds=[0], overrides={name: value})
            try: plan = report_runs(exp, [report])
            except ValueError as e:
                assert str(e).startswith(f"{report} fixes {name}: ") and "\n" not in str(e), str(e)
                refused.add(name)
                continue
            assert plan and all(getattr(cfg, name) == value for cfg, _, _ in plan.values()), (report, name)
    r = get_report(report)
    assert refused - {"methods", "quality", *VARIANT_FIELDS} == set(r.fixes)  # besides the rows' variants and columns: its record's list
    assert refused >= {"methods", "quality"}


def test_set_theta_reaches_table3_and_is_refused_by_table5(data, tmp_path):
    bench = Benchmark("SynthFF-tiny", str(data))
    exp = Experiments("mini", bench, tmp_path, overrides=dict(theta=100.0), params=dict(theta=110))
    gs = [cfg for cfg, _, _ in report_runs(exp, ["table3"]).values() if cfg.is_gs]
    assert len(gs) == 33 and {cfg.theta for cfg in gs} == {100.0}           # the user's --set wins over the notebook parameter
    exp = Experiments("mini", bench, tmp_path, params=dict(theta=110))
    assert {cfg.theta for cfg, _, _ in report_runs(exp, ["table3"]).values() if cfg.is_gs} == {110.0}
    with pytest.raises(ValueError, match="^table5 fixes theta: it sets theta row by row; change it with its parameters"):
        report_runs(Experiments("mini", bench, tmp_path, overrides=dict(theta=100.0)), ["table3", "table5"])


def test_a_new_report_is_one_record(data, tmp_path, capsys):
    "A table = one `Report` (and its notebook): registered, it is planned, launched and indexed by name like the paper's."
    from gsrepro.cli import main
    example = register_report(Report(
        "example", "An example: GS against the full method cross-dataset, at a θ", ("CelebDF",),
        parameters=dict(theta=TrainConfig.theta), feeds=dict(theta="theta"),
        specs=lambda exp, theta: cell_specs({"GS": ["CelebDF"], "Ours": ["CelebDF"], "CE-2": ["CelebDF"]}, gs_changes=dict(theta=float(theta)))))
    try:
        exp = Experiments("mini", Benchmark("SynthFF-tiny", str(data)), tmp_path, seeds=[0, 1])
        plan = report_runs(exp, ["example", "table2"], dict(theta=100))
        assert len(plan) == 8 and sum(r == ["example", "table2"] for _, _, r in plan.values()) == 2   # CE-2 shared with Table 2
        assert {cfg.theta for cfg, _, reps in plan.values() if cfg.is_gs and reps == ["example"]} == {100.0}
        assert main(["plan", "--only", "example", "--param", "theta=100", "--seeds", "0", "--runs", str(tmp_path)]) == 0
        assert "3 distinct runs: 0 done, 3 to train" in capsys.readouterr().out
        assert example.stems == ("example",)
    finally: unregister_report("example")
