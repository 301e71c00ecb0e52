"""Papermill smoke runs of paper notebooks with tiny parameters: the tables have the expected rows and the
`source` column, `-p theta` works, a second notebook reuses the first one's runs (the registry log), the diagnosis
writes its findings and the claims report gives every claim a verdict."""
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from gsrepro.core import repo_root
from gsrepro.registry import check_registry, read_registry

TINY = dict(bootstrap=20, seeds=[0], synth_overrides=dict(n_pairs=8, image_size=32, frames=2, qualities=["c23"], celebdf_real=4, dfdc_pairs=2),
            train_overrides=dict(epochs=1, image_size=32, batch_size=16, queue_size=64))   # no n_clusters, adbm_k: the claims compare their sweeps


def run_notebook(name, tmp: Path, **params) -> pd.DataFrame:
    pm.execute_notebook(repo_root() / "nbs" / f"{name}.ipynb", tmp / f"{name}.ipynb", kernel_name="python3", cwd=str(repo_root()),
                        progress_bar=False, parameters=dict(out_dir=str(tmp / "out"), data_dir=str(tmp / "data"),
                                                            runs_dir=str(tmp / "runs"), **{**TINY, **params}))
    return pd.read_csv(tmp / "out" / f"{name}.csv", dtype={"quoted_from": str, "runs": str}).fillna({"quoted_from": "", "runs": ""})


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("reports")


def test_table3_with_theta(tmp):
    t = run_notebook("table3", tmp, theta=120, cells={"CE-2": ["CelebDF"], "Ours": ["DF-HQ", "CelebDF"]})
    measured = t[t.source != "paper"]
    assert set(t.source) == {"paper", "SynthFF-mini-custom"}
    assert len(t[t.source == "paper"]) == 9 * 12                                # every printed number of Table 3
    assert sorted(zip(measured.method, measured.column, measured.metric)) == sorted(
        [("CE-2", "CelebDF", m) for m in ("acc", "auc")] + [("Ours", c, m) for c in ("DF-HQ", "CelebDF") for m in ("acc", "auc")])
    assert measured.value.between(0, 100).all() and (measured.ci_low <= measured.value).all()
    md = (tmp / "out/table3.md").read_text()
    assert "θ = 120° for the GS-family rows" in md and "Not measured under this preset" in md


def test_table2_reuses_the_runs_of_table3(tmp):
    trained_before = read_registry(tmp / "runs").action.tolist().count("trained")
    t = run_notebook("table2", tmp)
    assert read_registry(tmp / "runs").action.tolist().count("trained") == trained_before   # CE-2 and Ours on all of HQ: reused
    check_registry(tmp / "runs")
    paper = t[t.source == "paper"]
    assert len(paper) == 13 * 2 and (paper.quoted_from != "").sum() == 12 * 2
    measured = t[t.source == "SynthFF-mini-custom"]
    assert sorted(zip(measured.method, measured.column)) == sorted((m, c) for m in ("Ours", "CE-2") for c in ("CelebDF", "DFDC"))
    assert set(measured.metric) == {"auc"}


def test_diagnosis_then_claims(tmp):
    findings = run_notebook("diagnose_gs", tmp, seeds=[0, 1], batches=2, n_boot=50)
    assert list(findings.key) == ["geometry", "loss_balance", "adbm", "ablation", "synthff_trace"]
    assert set(findings.points_at) <= {"SynthFF", "reconstruction", "nothing found"} and findings.finding.str.len().gt(40).all()
    md = (tmp / "out/diagnose_gs.md").read_text()
    assert all(f'<a id="{k}"></a>' in md for k in ("geometry", "loss-balance", "adbm", "ablation", "synthff-trace"))
    claims = run_notebook("claims", tmp, seeds=[0, 1], train=False, n_boot=50)         # only the runs that exist
    assert len(claims) == 13 and set(claims.verdict) <= {"supported", "contradicted", "inconclusive", "not measured"}
    measured = claims.set_index("claim").verdict
    assert measured["the full method beats its baseline cross-dataset"] != "not measured"   # the diagnosis trained these runs
    assert measured["θ = 120° is the best of the θ grid"] == "not measured"                 # ... and not these
    contradicted = claims[claims.verdict == "contradicted"]
    assert all("diagnose_gs.md#" in str(d) for d in contradicted.diagnosis)


def test_table5_plots_the_learned_angle_against_theta(tmp):
    "Table 5 also writes the learned real–forgery angle of every θ and seed (`fig_theta.csv|png`), from the runs' last checkpoints."
    run_notebook("table5", tmp, thetas=[90.0, 150.0])
    geo = pd.read_csv(tmp / "out" / "fig_theta.csv")
    assert sorted(set(geo.theta)) == [90.0, 150.0] and geo.real_forgery.between(0, 180).all() and geo.cos_min.between(-1, 1).all()
    assert set(geo.source) == {"SynthFF-mini-custom"} and (tmp / "out" / "fig_theta.png").stat().st_size > 0


def test_every_experiment_notebook_declares_the_shared_parameters():
    "`reproduce` and `launch` pass `REPORT_PARAMETERS` to every notebook that trains: each must declare all of them, same defaults."
    import ast
    from gsrepro.protocols import REPORT_PARAMETERS, REPORTS
    same = lambda v: {} if v is None else v                                   # no overrides: None or {}
    for name in set(REPORTS) - {"fig_guidespace", "registry"}:              # these two train nothing
        declared = pm.inspect_notebook(str(repo_root() / "nbs" / f"{name}.ipynb"))
        assert set(REPORT_PARAMETERS) <= set(declared), (name, set(REPORT_PARAMETERS) - set(declared))
        for k, v in REPORT_PARAMETERS.items():
            assert same(ast.literal_eval(declared[k]["default"])) == same(v), (name, k, declared[k]["default"], v)


def test_every_record_lists_its_notebook_parameters():
    "A report's record (`gsrepro.reports.Report.parameters`) holds its notebook's own parameters, same names, same defaults."
    import ast
    from gsrepro.reports import REPORT_PARAMETERS, REPORTS
    for name, report in REPORTS.items():
        declared = pm.inspect_notebook(str(repo_root() / "nbs" / f"{name}.ipynb"))
        own = {k: ast.literal_eval(p["default"]) for k, p in declared.items() if k not in REPORT_PARAMETERS}
        assert own == report.parameters, (name, own, report.parameters)
        assert set(report.feeds) <= set(own) and not set(report.fixes) & set(report.feeds.values()), name


def test_plan_param_lists_the_runs_papermill_trains(tmp_path):
    "`gsrepro plan --param theta=100 --only table3` and `papermill nbs/table3.ipynb -p theta 100` name the same runs."
    import json
    from gsrepro.cli import main
    assert main(["plan", "--only", "table3", "--param", "theta=100", "--runs", str(tmp_path / "runs"), "--json", str(tmp_path / "p.json")]) == 0
    planned = {r["run"] for r in json.loads((tmp_path / "p.json").read_text())}
    pm.execute_notebook(repo_root() / "nbs" / "table3.ipynb", tmp_path / "table3.ipynb", kernel_name="python3", cwd=str(repo_root()),
                        progress_bar=False, parameters=dict(theta=100, train=False, runs_dir=str(tmp_path / "runs"), out_dir=str(tmp_path / "out")))
    t = pd.read_csv(tmp_path / "out" / "table3.csv", dtype={"runs": str}).fillna({"runs": ""})
    trained = {h for cell in t.runs for h in cell.split(";") if h}           # train=False: every cell names its (missing) runs
    assert len(planned) == 51 and trained == planned
    assert "θ = 100° for the GS-family rows" in (tmp_path / "out" / "table3.md").read_text()
    # the user's --set wins over the notebook parameter: the same runs with --param theta=110 --set theta=100
    assert main(["plan", "--only", "table3", "--param", "theta=110", "--set", "theta=100", "--runs", str(tmp_path / "runs"),
                 "--json", str(tmp_path / "q.json")]) == 0
    assert {r["run"] for r in json.loads((tmp_path / "q.json").read_text())} == planned
