"""Does the student's ceiling on Rotten Tomatoes move when it learns the teacher's embedding itself? (issue 22)

Every route hf-aft offers (probe distillation, AFT, the whole corpus as pool, larger students) leaves the 3-layer
MiniLM student near 0.80 test accuracy, below the mpnet teacher's probe (0.83-0.85). This checks the other classic
route, sentence-transformers-style embedding distillation: the student (MiniLM-L6's first 3 layers, mean pooling)
and a linear map to the teacher's 768 dimensions are trained with MSE to all-mpnet-base-v2's features (standardised)
on every text of the suite that is not a test row (the 9,738-text pool and the 2,000 training texts, no labels),
then frozen; after each epoch a logistic regression on the student's features of the first 100 and of all 2,000
labelled training texts (`hf_aft.distillation.linear_probe`, C by cross-validated log-loss) is scored on the test
split, beside the teacher's own probe on the same rows. Prints one JSON line per epoch and a table at the end.

    python bench/embedding_ceiling.py --epochs 6 --lr 1e-4     # 15-20 min an epoch on 2 shared cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402
import semi  # noqa: E402

from hf_aft import extract_teacher_features  # noqa: E402
from hf_aft.distillation import linear_probe  # noqa: E402

SIZES = (100, 2000)


def teacher_features(split: datasets.Dataset) -> np.ndarray:
    teachers = [str(p) for p in quality.teacher_paths("mpnet")]
    return np.asarray(extract_teacher_features(split, teachers, max_length=64)["teacher_features"], np.float32)


class Student(torch.nn.Module):
    """MiniLM's first 3 layers, mean-pooled [batch, 384], and a linear map to the teacher's width [batch, 768]."""

    def __init__(self, folder: Path, teacher_width: int):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.encoder = AutoModel.from_pretrained(str(folder))
        self.projection = torch.nn.Linear(self.encoder.config.hidden_size, teacher_width)

    def embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden, mask = self.encoder(**batch).last_hidden_state, batch["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    @torch.no_grad()
    def features(self, texts: list[str]) -> np.ndarray:
        self.eval()
        out = torch.cat([self.embed(texts[i:i + 128]) for i in range(0, len(texts), 128)]).numpy()
        self.train()
        return out


def probe_scores(student: Student, data, labels: dict[str, np.ndarray]) -> dict[str, float]:
    train, test = student.features(data["train"]["text"]), student.features(data["test"]["text"])
    return {f"student_probe_{n}": round(float(linear_probe(train[:n], labels["train"][:n], 0).score(
        test, labels["test"])), 4) for n in SIZES}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    labelled, pool_folder = semi.suite_data("rt", 20000)  # the whole corpus that is not a labelled or test row
    data, pool = datasets.load_from_disk(str(labelled)), datasets.load_from_disk(str(pool_folder))["train"]
    labels = {k: np.asarray(data[k]["label"]) for k in ("train", "test")}
    x = {k: teacher_features(data[k]) for k in ("train", "test")}
    teacher = {f"teacher_probe_{n}": round(float(linear_probe(x["train"][:n], labels["train"][:n], 0).score(
        x["test"], labels["test"])), 4) for n in SIZES}
    texts = list(pool["text"]) + list(data["train"]["text"])
    targets = torch.tensor(np.concatenate([teacher_features(pool), x["train"]]))
    targets = (targets - targets.mean(0)) / targets.std(0).mean()  # standardised: the MSE reads as unexplained share
    student = Student(quality.WORK / "student-init-3l", targets.shape[1])
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.01)
    steps = max(1, args.epochs * -(-len(texts) // 32))
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup over 6%, then linear decay (transformers' default)
        optimizer, lambda s: min(1.0, s / (0.06 * steps)) * max(0.0, (steps - s) / steps))
    rows = [{"epoch": "init", "mse": None, **probe_scores(student, data, labels)}]
    print(json.dumps({**teacher, **rows[0]}), flush=True)
    for epoch in range(args.epochs):
        start, total, order = time.perf_counter(), 0.0, np.random.default_rng(epoch).permutation(len(texts))
        for i in range(0, len(texts), 32):
            index = order[i:i + 32]
            loss = torch.nn.functional.mse_loss(student.projection(student.embed([texts[j] for j in index])),
                                                targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        rows.append({"epoch": epoch + 1, "mse": round(total / len(texts), 4), "epoch_s": round(
            time.perf_counter() - start), **probe_scores(student, data, labels)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nteacher probe: {teacher}\n\n| epoch | MSE (standardised) | student probe, 100 labels | 2,000 labels |"
          "\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['epoch']} | {row['mse'] or '-'} | {row['student_probe_100']:.3f} | "
              f"{row['student_probe_2000']:.3f} |")


if __name__ == "__main__":
    main()
