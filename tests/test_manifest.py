"""Manifest paths stay inside the manifest's folder: normalised with POSIX rules (`posixpath.normpath`, backslashes
ordinary characters), then neither absolute nor `..`-led; duplicates are compared normalised; every error is one
line with the row (1-based after the header) and the column."""
import pandas as pd
import pytest

from gsrepro.data import FaceDataset
from gsrepro.manifest import check_paths, inside_path, read_manifest, validate_manifest, write_manifest


def rows(*paths):
    n = len(paths)
    return pd.DataFrame({"path": list(paths), "dataset": "toy", "method": "real", "label": 0, "quality": "c23",
                         "split": "train", "video_id": "toy/real/000", "frame": range(n), "source_id": "000"})


def write_csv(folder, df):
    (folder / "manifest.csv").write_text(df.to_csv(index=False))
    return folder / "manifest.csv"


@pytest.mark.parametrize("path", ["../../etc/passwd", "a/../../x.png", "/etc/passwd", "//etc/passwd", "..", ".", "./",
                                  "a/..", "a/b/../../../x.png", "../" * 30 + "etc/passwd"])
def test_a_path_that_leaves_the_folder_is_refused_with_row_and_column(tmp_path, path):
    "The tester's row `../../etc/passwd` (and its disguises): read_manifest refuses it, one line, row and column."
    csv = write_csv(tmp_path, rows("ok/0.png", path, "ok/2.png"))
    with pytest.raises(ValueError) as e: read_manifest(csv)
    msg = str(e.value)
    assert msg.startswith(f"{csv}: row 3, column 'path': must stay inside the manifest's folder") and "\n" not in msg
    assert repr(path) in msg                                           # the value as written, after "got"


def test_paths_inside_are_normalised_not_refused(tmp_path):
    df = rows("./a.png", "b//c.png", "d/./e/../f.png", "g/", "h\\..\\..\\i.png", "..j.png")
    assert check_paths(df).tolist() == ["a.png", "b/c.png", "d/f.png", "g", "h\\..\\..\\i.png", "..j.png"]
    assert len(read_manifest(write_csv(tmp_path, df))) == 6           # backslashes are ordinary characters


def test_duplicates_are_compared_normalised(tmp_path):
    csv = write_csv(tmp_path, rows("x.jpg", "y.jpg", "./x.jpg"))
    with pytest.raises(ValueError, match=r"row 4, column 'path': duplicate path: the file of row 2 \('x.jpg'\)"):
        read_manifest(csv)
    with pytest.raises(ValueError, match="row 3, column 'path': duplicate path"):
        validate_manifest(rows("a/b.png", "a/c/../b.png"))
    with pytest.raises(ValueError, match="row 3, column 'path'"):
        write_manifest(rows("a.png", "a.png/"), tmp_path / "w.csv")
    assert not (tmp_path / "w.csv").exists()


def test_inside_path_is_the_one_rule():
    assert inside_path("a/../b") == "b" and inside_path("a/../../b") is None and inside_path("/b") is None


def test_a_dataset_over_such_a_file_stops_before_opening_anything(tmp_path):
    csv = write_csv(tmp_path, rows("ok.png", "../../etc/passwd"))
    with pytest.raises(ValueError, match="row 3, column 'path'"): FaceDataset(csv)


def test_unreadable_csv_names_the_file(tmp_path):
    (tmp_path / "manifest.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{tmp_path / 'manifest.csv'}: not a readable CSV"): read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_bytes(b'path,dataset\n"a.png,toy\n')
    with pytest.raises(ValueError, match="not a readable CSV"): read_manifest(tmp_path)
