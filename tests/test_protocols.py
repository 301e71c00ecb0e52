"""`gsrepro.registry`, `gsrepro.protocols`, `gsrepro.tables`: the run hash, the registry (a run is trained once and reused, partial runs resume),
protocols, and the table writer, on a tiny SynthFF with one-epoch runs."""
import pandas as pd
import pytest

from gsrepro.config import TrainConfig
from gsrepro.protocols import TABLE_COLUMNS, Benchmark, Experiments
from gsrepro.registry import check_registry, get_run, read_registry, run_hash
from gsrepro.synth import ensure_synthff
from gsrepro.tables import paper_rows, write_table
from gsrepro.paper import paper_table

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
    assert check_registry(tmp_path).loc[first.hash].tolist() == [1, 1, 1]


def test_shared_runs_and_tables(data, tmp_path):
    bench = Benchmark("SynthFF-tiny", str(data))
    exp = Experiments("mini", bench, tmp_path / "runs", seeds=[0], bootstrap=20, workers=1, overrides=TINY_TRAIN)
    rows = exp.measure_cells({"CE-2": ["FF++-HQ", "CelebDF", "DFDC"], "Ours": ["CelebDF"]}, metrics=["auc"])
    assert rows.groupby("method").runs.nunique().to_dict() == {"CE-2": 1, "Ours": 1}   # one run serves three columns
    assert set(rows.source) == {"SynthFF-tiny"} and rows.value.between(0, 100).all()
    exp.measure_cells({"CE-2": ["CelebDF"]}, metrics=["acc"])                   # another table asks: reused
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
