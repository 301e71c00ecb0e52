"""The paper's numbers as data: structure of every table, spot checks against the printed values, the row
labels reconstructed from the text's stated differences, and (when the paper text is at hand) a number-by-
number comparison with the text conversion."""
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gsrepro.paper as paper
from gsrepro.core import repo_root
from gsrepro.paper import PAPER_CAPTIONS, PAPER_COLUMNS, PAPER_TABLES, REFERENCES, paper_numbers, paper_table, paper_value
from gsrepro.vocab import FF_METHODS, TABLE5_THETAS

ROWS = {1: 40, 2: 26, 3: 108, 4: 32, 5: 28, 6: 24, 7: 48, 8: 16, "appendix_c": 13}


@pytest.mark.parametrize("n", PAPER_TABLES)
def test_every_table_is_tidy_and_plausible(n):
    df = paper_table(n)
    assert list(df.columns) == list(PAPER_COLUMNS)
    assert len(df) == ROWS[n]
    assert df.value.between(50, 100).all()                       # percentages as printed
    assert set(df.metric) <= {"acc", "auc"}
    assert set(df.setting) <= {"in-domain", "cross-method", "cross-dataset"}
    assert (df.train_set == "FF++").all() and set(df.quality) <= {"HQ", "LQ"}
    assert (df.table == str(n)).all() and df.row.min() == 1
    assert not df.method.eq("").any() and not df.group.eq("").any()
    cross = df[df.setting == "cross-method"]
    for train, test in zip(cross.train_methods, cross.test_methods):
        assert test in FF_METHODS and sorted(train.split(",") + [test]) == sorted(FF_METHODS)
    for cite in df.quoted_from[df.quoted_from != ""]:
        number = int(re.match(r"\[(\d+)\] ", cite).group(1))
        assert cite.endswith(REFERENCES[number])
    assert str(n) in PAPER_CAPTIONS


def test_spot_values_as_printed():
    cd, dfdc = dict(test_set="CelebDF"), dict(test_set="DFDC")
    assert paper_value(1, "Ours", "auc", quality="HQ") == 99.95
    assert paper_value(1, "SPSL", "acc", quality="LQ") == 81.57
    assert paper_value(2, "DCL", **cd) == 82.30
    assert paper_value(3, "w/o guide", **cd) == 76.42
    assert paper_value(3, "CE-(K+1)", "acc", test_methods="DF", quality="LQ") == 92.34
    assert paper_value(4, "VGG19+Ours", **dfdc) == 78.75
    assert paper_value(5, "Ours", row=1, **cd) == 74.95
    assert paper_value(6, "CE-(K+1)", test_methods="FS", quality="HQ") == 85.16
    assert paper_value(7, "Ours", test_methods="NT", quality="LQ") == 97.12
    assert paper_value(8, "Xception", test_methods="FS") == 51.2
    assert paper_value("appendix_c", "Ours", param="k", param_value=200.0) == 81.96
    assert paper_value("appendix_c", "Ours", param="n_clusters", param_value=700.0) == 83.65


def test_reconstructed_labels_match_the_texts_differences():
    "Rows whose labels the conversion lost are pinned by differences the text states."
    def gap(n, a, b, metric="auc", **w):
        return round(paper_value(n, a, metric, **w) - paper_value(n, b, metric, **w), 2)
    cd, dfdc = dict(test_set="CelebDF"), dict(test_set="DFDC")
    assert (gap(3, "GS", "CE-2", **cd), gap(3, "GS", "CE-2", **dfdc)) == (4.48, 4.66)
    assert (gap(3, "GS", "CE-(K+1)", **cd), gap(3, "GS", "CE-(K+1)", **dfdc)) == (2.98, 2.89)
    assert gap(3, "CE-2", "CE-(K+1)", "acc", test_methods="F2F", quality="HQ") == 0.53
    assert (gap(3, "Ours", "w/o pull", **cd), gap(3, "Ours", "w/o push", **cd)) == (4.72, 3.19)
    assert (gap(3, "Ours", "w/o A-DBM", **cd), gap(3, "Ours", "w/o A-DBM", **dfdc)) == (6.05, 4.5)
    assert gap(6, "GS", "CE-2", test_methods="NT", quality="HQ") == 1.85
    assert gap(6, "GS", "CE-(K+1)", test_methods="NT", quality="LQ") == 1.28
    assert gap(6, "CE-2", "CE-(K+1)", test_methods="FS", quality="HQ") == 0.73
    assert gap(7, "Ours", "w/o A-DBM", test_methods="FS", quality="HQ") == 5.32
    assert gap(8, "Ours", "DCL", test_methods="NT") == 2.3


def test_table5_theta_known_only_at_the_optimum():
    t5 = paper_table(5)
    known = t5[t5.param_value.notna()]
    assert set(known.row) == {4} and set(known.param_value) == {120.0}
    assert known.query("test_set == 'CelebDF' and metric == 'auc'").value.item() == 84.97
    assert TABLE5_THETAS[3] == 120.0 and list(TABLE5_THETAS) == sorted(TABLE5_THETAS)
    auc = t5.query("test_set == 'CelebDF' and metric == 'auc'").sort_values("row").value.to_numpy()
    assert np.argmax(auc) == 3                                     # the optimum is the 4th of the 7 rows


def test_quoted_rows_are_marked():
    allp = paper_numbers()
    quoted = allp[allp.quoted_from != ""]
    assert set(quoted.table) == {"1", "2", "8"}
    assert "Ours" not in set(quoted.method)
    assert allp[allp.method == "Ours"].quoted_from.eq("").all()
    assert len(allp) == sum(ROWS.values())


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="no paper table 9"):
        paper_table(9)
    with pytest.raises(ValueError, match="6 numbers match"):
        paper_value(3, "CE-2")
    with pytest.raises(ValueError, match="no column 'dataset'"):
        paper_value(2, "Ours", dataset="DFDC")
    assert paper_table("Table3").equals(paper_table(3))


def _paper_text():
    env = os.environ.get("GSREPRO_PAPER_TEXT")
    candidates = [Path(env)] if env else [repo_root().parent / "shared" / "paper" / "guide_space_paper.txt"]
    for p in candidates:
        if p.is_file():
            return p.read_text().splitlines()
    pytest.skip("paper text not found (set GSREPRO_PAPER_TEXT to guide_space_paper.txt)")


# first printed data line of each table in the text conversion, and its number of data lines
TEXT_ANCHORS = {"_T1": ("Xception [33] | 95.04", 10), "_T2": ("Xception [33] | 66.91", 13),
                "_T3": ("91.97 | 92.48", 9), "_T4": ("Xception | 64.09", 8), "_T5": ("69.22 | 74.95", 7),
                "_T6": ("76.61 | 85.89", 3), "_T7": ("w/o | 79.92", 6), "_T8": ("Xception [33] | 93.9", 4)}


@pytest.mark.parametrize("name", sorted(TEXT_ANCHORS))
def test_every_number_matches_the_paper_text(name):
    lines = _paper_text()
    anchor, n_rows = TEXT_ANCHORS[name]
    start = next(i for i, line in enumerate(lines) if line.startswith(anchor))
    printed = []
    for line in lines[start:start + n_rows]:
        cells = [c.strip() for c in line.split("|")]
        printed += [float(c) for c in cells if re.fullmatch(r"\d+\.\d+", c)]   # row labels never match
    wide = pd.read_csv(io.StringIO(getattr(paper, name)), dtype=str, keep_default_na=False)
    ours = [float(r[c]) for _, r in wide.iterrows() for c in wide.columns if "/" in c]
    assert ours == printed


def test_appendix_c_matches_the_paper_text():
    text = " ".join(l for l in _paper_text() if l.startswith(("in A-DBM", "The number of clusters")))
    printed = [float(x) for x in re.findall(r"\d+\.\d+", text) if x != "0.275"]
    assert paper_table("appendix_c").value.tolist() == printed
