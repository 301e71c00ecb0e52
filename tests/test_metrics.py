"""Metrics agree with scikit-learn on random inputs (ties and weights included); the bootstrap resamples
videos; videos are grouped by their full id; scores.csv is written atomically and read back exactly."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from gsrepro.metrics import (METRICS, ScoreWriter, _curve_metrics, compute_metrics, metrics_from_scores_csv,
                             roc_auc, video_scores)


def eer_reference(y, s, w=None):
    "EER read off scikit-learn's ROC curve: the fpr where fpr = 1 - tpr on the ROC polyline."
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
    return brentq(lambda x: 1 - x - np.interp(x, fpr, tpr), 0, 1)


def random_case(seed, n=None, decimals=None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(4, 2000))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.clip(rng.normal(0.45 + rng.uniform(-0.2, 0.4) * y, 0.25), 0, 1)
    if decimals is not None:
        s = np.round(s, decimals)            # many ties
    return y, s


@pytest.mark.parametrize("seed", range(40))
def test_frame_metrics_match_sklearn(seed):
    y, s = random_case(seed, decimals=(None, 0, 1, 2, 3)[seed % 5])
    m = compute_metrics(y, s)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["eer"] == pytest.approx(eer_reference(y, s), abs=1e-9)
    assert m["acc"] == pytest.approx(np.mean((s > 0.5) == y), abs=1e-15)
    assert (m["n_frames"], m["n_real"], m["n_fake"]) == (len(y), int((y == 0).sum()), int(y.sum()))


@pytest.mark.parametrize("seed", range(20))
def test_weighted_curves_match_sklearn_sample_weight(seed):
    "The bootstrap's weighted path (integer weights, zeros included) equals sklearn's sample_weight."
    y, s = random_case(100 + seed, decimals=(None, 1, 2)[seed % 3])
    rng = np.random.default_rng(seed)
    W = rng.integers(0, 4, (3, len(y))).astype(float)
    W[:, :2] = 1
    auc, ap, eer = _curve_metrics(y, s, W)
    for r, w in enumerate(W):
        assert auc[r] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        assert ap[r] == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)
        assert eer[r] == pytest.approx(eer_reference(y, s, w), abs=1e-9)


def test_known_values():
    y = np.array([0, 0, 1, 1])
    perfect = compute_metrics(y, [0.1, 0.2, 0.8, 0.9])
    assert (perfect["auc"], perfect["eer"], perfect["ap"], perfect["acc"]) == (1.0, 0.0, 1.0, 1.0)
    inverted = compute_metrics(y, [0.9, 0.8, 0.2, 0.1])
    assert (inverted["auc"], inverted["eer"], inverted["acc"]) == (0.0, 1.0, 0.0)
    constant = compute_metrics([0, 1, 1, 1], [0.5] * 4)
    assert (constant["auc"], constant["eer"], constant["ap"]) == (0.5, 0.5, 0.75)
    assert constant["acc"] == 0.25            # score 0.5 is not above the threshold: called real


def test_single_class_and_bad_input_raise():
    with pytest.raises(ValueError, match="0 real and 3 fake"):
        compute_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]: row 1 has 2.5"):
        compute_metrics([0, 1], [0.2, 2.5])          # logits are not probabilities
    with pytest.raises(ValueError, match="labels must be 0 \\(real\\) or 1 \\(fake\\): row 0 has 'fake'"):
        roc_auc(["fake", "real"], [0.2, 0.4])
    with pytest.raises(ValueError, match="bootstrap must be >= 0"):
        compute_metrics([0, 1], [0.2, 0.4], ["a", "b"], bootstrap=-1)


def correlated_videos(seed, n_videos=40, n_frames=10):
    "Fake share 1/2; each video has its own score level, frames jitter a little around it."
    rng = np.random.default_rng(seed)
    vy = np.arange(n_videos) % 2
    level = np.clip(rng.normal(0.4 + 0.2 * vy, 0.15), 0, 1)
    y = np.repeat(vy, n_frames)
    s = np.clip(np.repeat(level, n_frames) + rng.normal(0, 0.03, y.size), 0, 1)
    ids = np.repeat([f"synth/{('real', 'DF')[c]}/{i:03d}" for i, c in enumerate(vy)], n_frames)
    frames = np.tile(np.arange(n_frames), n_videos)
    return y, s, ids, frames


@pytest.mark.parametrize("seed", range(5))
def test_bootstrap_interval_contains_point_estimate(seed):
    y, s, ids, frames = correlated_videos(seed)
    m = compute_metrics(y, s, ids, bootstrap=300, seed=seed, frames=frames)
    assert m["bootstrap"] == 300
    for k in METRICS:
        lo, hi = m[f"{k}_ci"]
        assert 0 <= lo < hi <= 1 and lo <= m[k] <= hi, (k, lo, m[k], hi)
    assert compute_metrics(y, s, ids, bootstrap=300, seed=seed) == compute_metrics(y, s, ids, bootstrap=300, seed=seed)
    assert compute_metrics(y, s, ids, bootstrap=300, seed=seed + 1)["auc_ci"] != m["auc_ci"]


def test_bootstrap_resamples_videos_not_frames():
    y, s, ids, _ = correlated_videos(0)
    by_video = compute_metrics(y, s, ids, bootstrap=400, seed=1)
    by_frame = compute_metrics(y, s, np.arange(len(y)).astype(str), bootstrap=400, seed=1)
    width = lambda m: m["auc_ci"][1] - m["auc_ci"][0]
    assert width(by_video) > 2 * width(by_frame)


def test_bootstrap_matches_explicit_resampling():
    "Each resample equals computing the metrics on the concatenated drawn videos (same draws, same order)."
    y, s, ids, _ = correlated_videos(3, n_videos=12, n_frames=4)
    from gsrepro.metrics import _bootstrap, _video_codes, _video_table
    codes, uniq = _video_codes(ids, len(y))
    videos = _video_table(y.astype(np.int8), s, codes, uniq)
    rng = np.random.default_rng(7)                  # replay the stratified draws of _bootstrap(seed=7)
    vy = videos.label.to_numpy()
    real, fake = np.flatnonzero(vy == 0), np.flatnonzero(vy == 1)
    draws_real = real[rng.integers(0, len(real), (50, len(real)))]
    draws_fake = fake[rng.integers(0, len(fake), (50, len(fake)))]
    aucs, vaucs = [], []
    for b in range(50):
        rows = np.concatenate([np.flatnonzero(codes == v) for v in np.r_[draws_real[b], draws_fake[b]]])
        aucs.append(roc_auc_score(y[rows], s[rows]))
        chosen = np.r_[draws_real[b], draws_fake[b]]
        vaucs.append(roc_auc_score(vy[chosen], videos.score.to_numpy()[chosen]))
    ci = _bootstrap(y.astype(np.int8), s, codes, videos, 50, seed=7)
    assert ci["auc_ci"] == pytest.approx(list(np.percentile(aucs, [2.5, 97.5])), abs=1e-12)
    assert ci["video_auc_ci"] == pytest.approx(list(np.percentile(vaucs, [2.5, 97.5])), abs=1e-12)


def test_bootstrap_with_very_few_videos_keeps_both_classes():
    m = compute_metrics([0, 0, 1, 1], [0.3, 0.4, 0.6, 0.2], ["r/1", "r/2", "f/1", "f/2"], bootstrap=200)
    assert m["n_real_videos"] == m["n_fake_videos"] == 2
    assert all(np.isfinite(m[f"{k}_ci"]).all() for k in METRICS)


def test_bootstrap_needs_video_ids():
    with pytest.raises(ValueError, match="resample videos: pass video_ids"):
        compute_metrics([0, 1], [0.2, 0.4], bootstrap=10)


def test_video_auc_groups_by_full_video_id():
    # Four methods each fake video 000_003; grouping by the file name would make them one video.
    methods = ["DF", "F2F", "FS", "NT"]
    fake_scores = {"DF": 0.9, "F2F": 0.35, "FS": 0.8, "NT": 0.3}
    rows = [(f"ffpp/{m}/000_003", 1, fake_scores[m]) for m in methods for _ in range(3)]
    rows += [(f"ffpp/real/{v}", 0, sc) for v, sc in (("000", 0.2), ("003", 0.4))]
    ids, y, s = map(np.array, zip(*rows))
    m = compute_metrics(y, s, ids)
    assert m["n_videos"] == 6 and m["n_fake_videos"] == 4
    vs = video_scores(y, s, ids)
    assert vs.loc["ffpp/F2F/000_003", "score"] == pytest.approx(0.35)
    # fakes 0.9, 0.35, 0.8, 0.3 against reals 0.2, 0.4: 6 of 8 pairs ordered right
    assert m["video_auc"] == pytest.approx(6 / 8)
    merged = compute_metrics(y, s, [i.split("/")[-1] for i in ids])      # the flawed grouping, for contrast
    assert merged["n_videos"] == 3 and merged["video_auc"] == 1.0


def test_merged_videos_are_refused():
    with pytest.raises(ValueError, match="'000_003' has both real and fake frames"):
        compute_metrics([0, 1], [0.2, 0.6], ["000_003", "000_003"])
    with pytest.raises(ValueError, match="'000_003' has frame 5 twice"):
        compute_metrics([1, 1, 0], [0.2, 0.6, 0.1], ["000_003", "000_003", "000"], frames=[5, 5, 5])


def test_score_writer_roundtrip_and_atomicity(tmp_path):
    y, s, ids, frames = correlated_videos(2)
    s = s.astype(np.float32)                       # what a model returns
    out = tmp_path / "run" / "scores.csv"
    with ScoreWriter(out) as w:
        for a in range(0, len(y), 64):
            w.write(ids[a:a + 64], frames[a:a + 64], y[a:a + 64], s[a:a + 64])
            assert not out.exists()
    assert w.n_rows == len(y)
    back = pd.read_csv(out, dtype={"video_id": str})
    assert list(back.columns) == ["video_id", "frame", "label", "score"]
    np.testing.assert_array_equal(back.score.to_numpy(np.float32), s)     # scores survive exactly
    direct = compute_metrics(y, s, ids, bootstrap=100, seed=4)
    assert metrics_from_scores_csv(out, bootstrap=100, seed=4) == direct
    json.dumps(direct)                              # metrics.json-ready: plain floats, ints, lists

    with pytest.raises(KeyboardInterrupt):
        with ScoreWriter(tmp_path / "run" / "other.csv") as w:
            w.write(["a"], [0], [1], [0.5])
            raise KeyboardInterrupt
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["scores.csv"]


def test_scores_csv_keeps_numeric_looking_ids_apart_and_splits_by_column(tmp_path):
    out = tmp_path / "scores.csv"
    with ScoreWriter(out, extra_columns=["test_set"]) as w:
        w.write(["000", "0", "00"], [0, 0, 0], [1, 1, 0], [0.9, 0.8, 0.1], test_set=["celebdf"] * 3)
        w.write(["000", "0"], [0, 0], [1, 0], [0.3, 0.6], test_set=["dfdc"] * 2)
    per = metrics_from_scores_csv(out, by="test_set")
    assert list(per) == ["celebdf", "dfdc"]
    assert per["celebdf"]["n_videos"] == 3 and per["dfdc"]["n_videos"] == 2
    assert per["dfdc"]["auc"] == 0.0
    with pytest.raises(ValueError, match="scores.csv: video '000' has frame 0 twice"):
        metrics_from_scores_csv(out)                # both test sets pooled: same ids, so refused


def test_scores_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no scores file"):
        metrics_from_scores_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,label,score\na,0,0.1\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) frame"):
        metrics_from_scores_csv(bad)
    bad.write_text("video_id,frame,label,score\n,0,0,0.1\nb,0,1,0.7\n")
    with pytest.raises(ValueError, match="bad.csv: video_id is missing at row 0"):
        metrics_from_scores_csv(bad)
    bad.write_text("video_id,frame,label,score\na,0,0,0.1\nb,0,1,1.7\n")
    with pytest.raises(ValueError, match="bad.csv: scores must be probabilities in \\[0, 1\\]: row 1 has 1.7"):
        metrics_from_scores_csv(bad)
