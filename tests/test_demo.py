"""The demo's data: an honest split (no group in both train and test) and an unlabelled pool that never holds a test
or training row, drawn so that train and test are the same with or without it; the demo's closing line."""

import pandas as pd
import pytest

from hf_aft.commands.demo import gap_line, print_results
from hf_aft.demo import group_disjoint_splits


def frame(n: int = 600) -> pd.DataFrame:
    return pd.DataFrame({"movie": [f"m{i % 40}" for i in range(n)], "text": [f"snippet {i}" for i in range(n)],
                         "fresh": [i % 3 == 0 for i in range(n)]})


def split(n_unlabeled: int = 0):
    return group_disjoint_splits(frame(), "movie", ["rotten", "fresh"], lambda part: part.fresh, 200, 100, 0,
                                 n_unlabeled)


def test_the_unlabelled_pool_holds_no_test_movie_and_no_training_row():
    data, movie = split(n_unlabeled=150), dict(zip(frame().text, frame().movie, strict=True))
    test_movies = {movie[t] for t in data["test"]["text"]}
    pool = data["unlabeled"]["text"]
    assert len(pool) == 150 and data["unlabeled"].column_names == ["text"]
    assert not {movie[t] for t in pool} & test_movies
    assert not set(pool) & set(data["train"]["text"])
    assert not {movie[t] for t in data["train"]["text"]} & test_movies


def test_the_labelled_splits_do_not_change_with_a_pool():
    plain, pooled = split(), split(n_unlabeled=150)
    assert "unlabeled" not in plain
    for name in ("train", "test"):
        assert plain[name]["text"] == pooled[name]["text"] and plain[name]["label"] == pooled[name]["label"]


def test_a_pool_larger_than_what_is_left_takes_all_of_it():
    data = split(n_unlabeled=10_000)
    assert 0 < len(data["unlabeled"]) < 600 - 100 - 200 + 1


def test_the_closing_line_says_what_share_of_the_gap_was_closed():
    assert gap_line(0.70, 0.80, 0.75) == "AFT closed 50% of the gap between STL and the teacher's probe"
    assert "no gap to close" in gap_line(0.80, 0.78, 0.81)
    assert "not measured" in gap_line(0.80, None, 0.81)


def test_the_students_folders_print_as_the_readme_shows_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo resolves --workdir runs/demo to absolute folders; the README shows it given
    run = {"eval": {"eval_accuracy": 0.77}, "beta": 0.1, "terms": {"labeled_rows": 300, "unlabeled_rows": 800}}
    print_results({**run, "output_dir": str(tmp_path / "runs/demo/student-aft")},
                  {**run, "output_dir": "/elsewhere/student-stl"}, 0.85)
    out = capsys.readouterr().out
    assert "AFT student saved to runs/demo/student-aft (its README.md" in out
    assert "STL student saved to /elsewhere/student-stl" in out  # outside the working directory: as it is


def test_a_missing_demo_model_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """Without `make demo-setup` the demo wrote its data folder, then said the teacher was missing."""
    from importlib import metadata

    from hf_aft.commands import main

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 2
    assert "the demo needs all-mpnet-base-v2: make demo-setup" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").glob("data-*"))


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--n_train", "0", "the teacher's probe cross-fits both classes"),
    ("--n_train", "-1", "the teacher's probe cross-fits both classes"),  # was a pandas traceback
    ("--n_train", "9", "the teacher's probe cross-fits both classes"),
    ("--n_test", "0", "scored on the test split"),
    ("--n_unlabeled", "0", "the AFT run trains with the unlabelled rows"),  # was refused after the STL run
])
def test_a_demo_too_small_to_run_is_refused_before_anything_is_written(flag, value, why, tmp_path, capsys):
    """`--n_train 0` wrote the data, the teacher and the student's initial weights, then said a saved split had no
    rows, naming no option."""
    from hf_aft.commands import main

    earlier = tmp_path / "demo" / "notes.txt"
    earlier.parent.mkdir()
    earlier.write_text("mine")
    assert main(["demo", "--workdir", str(tmp_path / "demo"), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("hf-aft: error:") == 1 and len(err.strip().splitlines()) == 1
    assert f"{flag} {value} is too few: " in err and why in err and f"pass {flag} " in err and "(default" in err
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["notes.txt"] and earlier.read_text() == "mine"
