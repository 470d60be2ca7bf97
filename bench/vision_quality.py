"""Vision quality benchmark: STL vs KD vs AFT test accuracy of a small image student trained from scratch, with a real
ImageNet teacher (MobileNetV2), mean ± sd over seeds and the gain over STL paired by seed.

    pip install animal-mnist==0.4 --no-deps    # the data (its declared deps pull TensorFlow: not needed)
    python bench/vision_quality.py             # about 20 minutes on 1 CPU thread

Data: animal-mnist (28x28 animal silhouettes, 10 classes), exact duplicates removed, a fixed random split of 2,000
train / 1,000 test images (grey, turned into RGB by hf-aft). Teacher: `--teacher` (default
../shared/models/mobilenet_v2_imagenet, real ImageNet weights; it preprocesses with its own image processor, 224x224).
Student: a 4-layer ViT (patch 4, width 96, about 0.3M parameters) from random initialisation, a different one per
seed, trained with `hf-aft train --image_column image`. Results append to bench/results/vision_quality.jsonl (reruns
skip finished runs); the table is printed at the end, with a linear probe of the teacher's features for context.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import torch
from methods_table import paired_table

from hf_aft.commands.train import train

WORK = Path("runs/bench_vision")
RESULTS = Path("bench/results/vision_quality.jsonl")
TEACHER = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mobilenet_v2_imagenet"
SEEDS = (0, 1, 2)
GRID = [("none", 0), ("kd", 1), ("aft", 0.1), ("aft", 1), ("aft", 10)]
CLASSES = "bear bird cat cow dog elephant giraffe horse sheep zebra".split()


def animal_mnist(n_train: int = 2000, n_test: int = 1000, seed: int = 0):
    """DatasetDict(train, test) of de-duplicated animal-mnist silhouettes: `image` (PIL, grey) and `label`."""
    import datasets
    from PIL import Image

    spec = importlib.util.find_spec("animal_mnist")
    if spec is None:
        raise SystemExit("this benchmark needs the data: pip install animal-mnist==0.4 --no-deps")
    folder = Path(spec.submodule_search_locations[0]) / "data" / "Animal_MNIST"
    images = pickle.load(gzip.open(folder / "animal_data_version_3.gz"))
    labels = np.asarray(pickle.load(gzip.open(folder / "animal_label_version_3.gz")))
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)  # exact duplicates removed, so no image is in both splits
    order = np.random.default_rng(seed).permutation(keep)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})

    def split(rows):
        return datasets.Dataset.from_dict({"image": [Image.fromarray(images[i]) for i in rows],
                                           "label": labels[rows].tolist()}, features=features)

    return datasets.DatasetDict({"train": split(order[:n_train]), "test": split(order[n_train : n_train + n_test])})


def student_init(seed: int, arch: str = "vit") -> Path:
    """A small image student for 28x28 images, randomly initialised from `seed`, saved with its image processor:
    `vit` a 4-layer ViT (patch 4, width 96), `cnn` a 3-stage ResNet (basic blocks, widths 32/64/128); both about
    0.31M parameters and a 7x7 grid after the stem, so they differ in inductive bias, not in size."""
    from transformers import (
        ResNetConfig,
        ResNetForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    folder = WORK / (f"student-init-{seed}" if arch == "vit" else f"student-init-{arch}-{seed}")
    if not (folder / "config.json").exists():
        torch.manual_seed(seed)
        if arch == "vit":
            config = ViTConfig(image_size=28, patch_size=4, hidden_size=96, num_hidden_layers=4,
                               num_attention_heads=4, intermediate_size=192, num_labels=len(CLASSES))
            ViTForImageClassification(config).save_pretrained(folder)
        else:
            config = ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1],
                                  layer_type="basic", num_labels=len(CLASSES))
            ResNetForImageClassification(config).save_pretrained(folder)
        ViTImageProcessor(size={"height": 28, "width": 28}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                          ).save_pretrained(folder)
    return folder


def run(teacher: Path, transfer: str, beta: float, seed: int, epochs: float) -> dict:
    out = WORK / "runs" / f"{transfer}-{beta}-{seed}"
    args = ["--model_name_or_path", str(student_init(seed)), "--dataset_name", str(WORK / "data"),
            "--image_column", "image", *(["--teachers", str(teacher)] if transfer != "none" else []),
            "--transfer", transfer,
            *(["--beta", str(beta)] if transfer != "none" else []),
            "--seed", str(seed), "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "64",
            "--per_device_eval_batch_size", "256", "--learning_rate", "1e-3", "--weight_decay", "0.05",
            "--warmup_steps", "0.05", "--save_strategy", "no", "--report_to", "none", "--logging_steps", "50",
            "--disable_tqdm", "true", "--overwrite_output_dir", "--use_cpu", "true", "--output_dir", str(out)]
    summary = train(args)
    return {"transfer": transfer, "beta": beta, "seed": seed, "epochs": epochs,
            "accuracy": summary["eval"]["eval_accuracy"], "macro_f1": summary["eval"]["eval_macro_f1"],
            "scales": summary["scales"], "train_seconds": summary["train"]["train_runtime"]}


def probe(teacher: Path) -> dict[str, float]:
    """Logistic regression on the teacher's (cached) features and on raw pixels, train -> test."""
    import datasets
    from sklearn.linear_model import LogisticRegression

    from hf_aft import extract_teacher_features

    data = datasets.load_from_disk(str(WORK / "data"))
    scores = {}
    split = {k: extract_teacher_features(v, [str(teacher)], image_column="image") for k, v in data.items()}
    fit = LogisticRegression(max_iter=3000).fit(split["train"]["teacher_features"], split["train"]["label"])
    scores["MobileNetV2 features (1280-d)"] = fit.score(split["test"]["teacher_features"], split["test"]["label"])
    pixels = {k: np.stack([np.asarray(im, np.float32).ravel() / 255 for im in v["image"]]) for k, v in data.items()}
    fit = LogisticRegression(max_iter=3000).fit(pixels["train"], data["train"]["label"])
    scores["raw pixels (784-d)"] = fit.score(pixels["test"], data["test"]["label"])
    return scores


def table(rows: list[dict]) -> str:
    return paired_table(rows, "accuracy", "accuracy")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=TEACHER)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--grid", default=",".join(f"{t}:{b}" for t, b in GRID),
                        help="methods as transfer:beta, comma-separated (default: %(default)s)")
    parser.add_argument("--no_probe", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.teacher / "config.json").exists():
        raise SystemExit(f"teacher {args.teacher} not found: pass --teacher FOLDER (a transformers image model)")
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not (WORK / "data" / "dataset_dict.json").exists():
        animal_mnist().save_to_disk(str(WORK / "data"))
    done = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    grid = [(t, float(b) if "." in b else int(b)) for t, b in (item.split(":") for item in args.grid.split(","))]
    for seed in args.seeds:  # seed-major, so that an interrupted run still has every method
        for transfer, beta in grid:
            if any((r["transfer"], r["beta"], r["seed"], r["epochs"]) == (transfer, beta, seed, args.epochs)
                   for r in done):
                continue
            row = run(args.teacher, transfer, beta, seed, args.epochs)
            done.append(row)
            with RESULTS.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(table([r for r in done if r["epochs"] == args.epochs and r["seed"] in args.seeds
                 and (r["transfer"], r["beta"]) in grid]))
    if not args.no_probe:
        print("\n| features | linear-probe test accuracy |\n|---|---|")
        for name, score in probe(args.teacher).items():
            print(f"| {name} | {score:.4f} |")


if __name__ == "__main__":
    main()
