"""`gsrepro.evaluate`: streamed scores.csv with the documented columns, metrics.json per test set with bootstrap
intervals, incremental test sets, two evaluations of one run at once, and the `gsrepro evaluate` command, on a tiny
SynthFF and a one-epoch CE-2 run."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from gsrepro.cli import main as gsrepro_main
from gsrepro.evaluate import embed_test_set, evaluate_model, evaluate_run, standard_test_sets
from gsrepro.manifest import read_manifest
from gsrepro.synth import generate, get_preset
from gsrepro.config import TrainConfig
from gsrepro.train import train
from gsrepro.testing import together

METRIC_KEYS = {"acc", "auc", "video_auc", "eer", "ap", "n_frames", "n_videos", "n_real", "n_fake", "filters"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A tiny SynthFF (8 pairs, 32 px, 2 frames) and a CE-2 run of one epoch on it."
    root = tmp_path_factory.mktemp("evaluate")
    data = generate(root / "synth", get_preset("mini", n_pairs=8, image_size=32, frames=2, qualities=("c23", "c40"),
                                               celebdf_real=4, dfdc_pairs=2), workers=1, progress=False)
    cfg = TrainConfig.from_preset("mini", data=str(data), loss="ce2", epochs=1, image_size=32, batch_size=16, progress=False)
    train(cfg, root / "run")
    return root / "run", data


def test_scores_and_metrics_files(run):
    run_dir, data = run
    sets = standard_test_sets(read_manifest(data))
    chosen = {k: sets[k] for k in ("synthff-c23", "synthff-c23-DF", "synth-dfdc-c23")}
    res = evaluate_run(run_dir, chosen, bootstrap=100, progress=False)
    scores = pd.read_csv(run_dir / "scores.csv", dtype={"video_id": str})
    assert list(scores.columns) == ["video_id", "frame", "label", "score", "test_set"]
    assert scores.score.between(0, 1).all()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == set(chosen)
    for name, m in metrics.items():
        assert METRIC_KEYS <= set(m)
        rows = scores[scores.test_set == name]
        assert m["n_frames"] == len(rows) and m["n_videos"] == rows.video_id.nunique()
        assert abs(m["auc"] - roc_auc_score(rows.label, rows.score)) < 1e-9            # agrees with scikit-learn
        assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
    # the DF test set is the real test frames plus the DF ones: a subset of the in-domain set
    df_rows = scores[scores.test_set == "synthff-c23-DF"]
    assert set(df_rows.video_id) <= set(scores[scores.test_set == "synthff-c23"].video_id)
    assert res["synthff-c23-DF"]["n_fake"] < res["synthff-c23"]["n_fake"]
    # embeddings give the same scores as the streamed evaluation
    z, p, rows = embed_test_set(run_dir, chosen["synthff-c23"])
    assert z.shape == (len(rows), 512)
    assert np.allclose(np.sort(p), np.sort(scores[scores.test_set == "synthff-c23"].score), atol=1e-5)


def test_adding_a_test_set_keeps_the_others(tmp_path):
    "A stand-in detector (brightness) on a hand-made manifest; a later call adds a test set, the rows of the first stay."
    from PIL import Image
    rows = []
    for v, method in enumerate(["real", "real", "DF", "F2F"]):
        for f in range(2):
            path = f"{method}{v}_{f}.png"
            Image.fromarray(np.full((8, 8, 3), 60 + 40 * v, np.uint8)).save(tmp_path / path)
            rows.append(dict(path=path, dataset="ff", method=method, label=int(method != "real"), quality="c23",
                             split="test", video_id=f"ff/{method}/{v}", frame=f, source_id=str(v)))
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    model = type("Brightness", (torch.nn.Module,), {"forward": lambda self, x: (x.flatten(1), x.mean(dim=(1, 2, 3)))})()  # brighter = more fake
    evaluate_model(model, tmp_path / "manifest.csv", {"all": dict(dataset="ff")}, tmp_path / "out", bootstrap=0, progress=False)
    evaluate_model(model, tmp_path / "manifest.csv", {"DF": dict(methods=["DF"])}, tmp_path / "out", bootstrap=0, progress=False)
    scores = pd.read_csv(tmp_path / "out/scores.csv")
    assert scores.test_set.value_counts().to_dict() == {"all": 8, "DF": 6}
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["all"]["auc"] == 1.0 and metrics["DF"]["auc"] == 1.0


def test_command_line(run, capsys):
    run_dir, data = run
    assert gsrepro_main(["evaluate", "--run", str(run_dir), "--test-set", "synth-celebdf-c23", "--bootstrap", "20",
                         "--no-progress"]) == 0
    assert "synth-celebdf-c23" in json.loads((run_dir / "metrics.json").read_text())
    assert gsrepro_main(["evaluate", "--run", str(run_dir), "--list"]) == 0
    assert "synthff-c40-NT" in capsys.readouterr().out
    assert gsrepro_main(["evaluate", "--run", str(run_dir), "--test-set", "nope"]) == 2
    assert gsrepro_main(["evaluate", "--run", str(run_dir.parent / "missing")]) == 2
    err = capsys.readouterr().err
    assert "unknown test set(s) nope" in err and "config.json missing" in err


def test_two_evaluations_at_once_keep_both(run, tmp_path):
    """Two evaluations of one run started together used to lose one test set from metrics.json and scores.csv (each
    read the files before the other wrote them): the second now waits for the first and adds its own."""
    run_dir, data = run
    mine = tmp_path / "run"
    mine.mkdir()
    for name in ("config.json", "best.pt"): shutil.copy(run_dir / name, mine / name)
    setup = f"from gsrepro.evaluate import evaluate_run, standard_test_sets\nfrom gsrepro.manifest import read_manifest\n" \
            f"sets = standard_test_sets(read_manifest({str(data)!r}))"
    jobs = [(setup, f"evaluate_run({str(mine)!r}, {{{name!r}: sets[{name!r}]}}, bootstrap=200, progress=False)")
            for name in ("synthff-c23", "synthff-c40")]
    results = together(jobs, tmp_path)
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    assert sum("waiting: " in err for _, _, err in results) == 1                  # they did meet
    metrics = json.loads((mine / "metrics.json").read_text())
    scores = pd.read_csv(mine / "scores.csv", dtype={"video_id": str})
    assert set(metrics) == set(scores.test_set) == {"synthff-c23", "synthff-c40"}
    for name, m in metrics.items(): assert m["n_frames"] == (scores.test_set == name).sum()
    assert sorted(p.name for p in mine.iterdir()) == ["best.pt", "config.json", "metrics.json", "scores.csv"]
