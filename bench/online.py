"""Cached teacher features (hf-aft) vs online feature distillation (the teacher run at every step), total wall time.

Reproduce (CPU, 1 thread; with the mpnet teacher about 12 minutes on a quiet machine, 26 at a load average of 8):

    HF_HUB_OFFLINE=1 .venv/bin/python bench/online.py --threads 1

Same student (the first 3 layers of all-MiniLM-L6-v2), same teacher (all-mpnet-base-v2, or `--teacher minilm`), same
data (`--n` Rotten Tomatoes training texts, 512 by default, max length 64, batches of 32 padded per batch), same seed,
same AFT loss (beta 0.1). hf-aft: `extract_teacher_features` into a fresh cache folder (teacher hashing and loading
included), then `AFTTrainer` reading the cached column. Online: `OnlineAFTTrainer` below, an AFTTrainer whose
`compute_loss` tokenizes each batch's texts with the teacher's tokenizer and runs the frozen teacher on them in
`torch.inference_mode()` (what TRL's and DistillKit's distillation trainers do with logits), then applies the same
loss; its time includes loading the teacher. The two methods alternate over `--rounds` rounds.

Each method trains once for the largest of `--epochs` (1,3,10 by default); the time for k epochs is the elapsed time
at the end of its k-th epoch (a TrainerCallback), measured, not extrapolated. A separate k-epoch run would differ only
in its learning-rate schedule, which costs nothing. `--separate` trains one run per k instead (slower).
As a check that both optimise the same thing, the mean transfer loss over the first epoch is printed for each.
JSON goes to bench/results/online.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

from hf_aft import AFTConfig, AFTTrainer, extract_teacher_features
from hf_aft.demo import minilm_path, rotten_tomatoes, truncated_student
from hf_aft.features import FEATURES_COLUMN, TeacherInfo
from hf_aft.teachers import pool

RESULTS = Path(__file__).parent / "results"
TEACHERS = {"mpnet": "all-mpnet-base-v2", "minilm": "all-MiniLM-L6-v2"}


class OnlineAFTTrainer(AFTTrainer):
    """AFT with the teacher run on every batch instead of a cached column (the dataset keeps its `text` column and a
    zero `teacher_features` placeholder so that AFTTrainer's checks and collator apply unchanged)."""

    def __init__(self, *args, teacher, teacher_tokenizer, max_length: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.teacher_tokenizer, self.max_length = teacher.eval().requires_grad_(False), \
            teacher_tokenizer, max_length
        inner = self.data_collator

        def collate(examples):
            texts = [example.pop("text") for example in examples]
            return {**inner(examples), "text": texts}

        self.data_collator = collate

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "text" not in self._signature_columns:
            self._signature_columns.append("text")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        texts = inputs.pop("text")
        with torch.inference_mode():
            batch = self.teacher_tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                           return_tensors="pt").to(self.teacher.device)
            features = pool(self.teacher(**batch), batch["attention_mask"], "mean")
        inputs[FEATURES_COLUMN] = features.clone()  # a normal tensor: the scales' gradient needs it
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class EpochClock(TrainerCallback):
    """Elapsed seconds since `start` at the end of each epoch."""

    def __init__(self, start: float):
        self.start, self.ends = start, []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter() - self.start)


def config(workdir: str, epochs: int, steps_per_epoch: int) -> AFTConfig:
    return AFTConfig(output_dir=workdir, transfer="aft", beta=0.1, report_to="none", save_strategy="no",
                     num_train_epochs=epochs, logging_steps=steps_per_epoch, disable_tqdm=True,
                     per_device_train_batch_size=32, dataloader_num_workers=0, seed=0, learning_rate=2e-4)


def train(method: str, teacher: Path, student: Path, data, epochs: int, max_length: int, workdir: Path) -> dict:
    """One run: wall time at each epoch's end (from before the teacher is touched), and the logged losses."""
    transformers.set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(student)
    steps = -(-len(data) // 32)
    start = time.perf_counter()
    clock = EpochClock(start)
    if method == "hf-aft":
        train_data = extract_teacher_features(data, str(teacher), pooling="mean", max_length=max_length,
                                              cache_dir=tempfile.mkdtemp(dir=workdir), device="cpu")
        extract_s = time.perf_counter() - start
        trainer = AFTTrainer(model=model, args=config(str(workdir / "out"), epochs, steps), train_dataset=train_data,
                             processing_class=tokenizer, callbacks=[clock])
    else:
        extract_s = 0.0
        t_tok, t_model = AutoTokenizer.from_pretrained(teacher), AutoModel.from_pretrained(teacher)
        width = t_model.config.hidden_size
        train_data = data.add_column(FEATURES_COLUMN, [np.zeros(width, np.float32)] * len(data))
        trainer = OnlineAFTTrainer(model=model, args=config(str(workdir / "out"), epochs, steps),
                                   train_dataset=train_data, processing_class=tokenizer, callbacks=[clock],
                                   teacher_infos=[TeacherInfo(str(teacher), "online", "mean", width, max_length)],
                                   teacher=t_model, teacher_tokenizer=t_tok, max_length=max_length)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    losses = [log.get("transfer_loss") for log in trainer.state.log_history if "transfer_loss" in log]
    return {"epoch_ends_s": clock.ends, "extract_s": extract_s, "transfer_loss_per_epoch": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="training texts")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--epochs", default="1,3,10")
    parser.add_argument("--teacher", choices=("mpnet", "minilm"), default="mpnet")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--separate", action="store_true", help="one run per epoch count instead of epoch ends")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    epochs = sorted(int(e) for e in args.epochs.split(","))
    if args.teacher == "mpnet":
        from quality import mpnet_path

        teacher = mpnet_path()
    else:
        teacher = minilm_path()

    runs = {"hf-aft": {e: [] for e in epochs}, "online": {e: [] for e in epochs}}
    extract, losses = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        student = truncated_student(minilm_path(), work / "student", layers=3)
        tokenizer = AutoTokenizer.from_pretrained(student)
        data = rotten_tomatoes(args.n, 100, seed=0)["train"]
        data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True)
        for r in range(args.rounds):
            for method in (("hf-aft", "online") if r % 2 == 0 else ("online", "hf-aft")):
                for length in (epochs if args.separate else [max(epochs)]):
                    out = train(method, teacher, student, data, length, args.max_length, work)
                    for e in ([length] if args.separate else epochs):
                        runs[method][e].append(out["epoch_ends_s"][e - 1])
                    if method == "hf-aft":
                        extract.append(out["extract_s"])
                    losses[method] = out["transfer_loss_per_epoch"]

    best = {m: {e: min(v) for e, v in per.items()} for m, per in runs.items()}
    how = "separate runs" if args.separate else "elapsed at the end of epoch k of one run"
    print(f"\n### Cached (hf-aft) vs online distillation: teacher {TEACHERS[args.teacher]}, 3-layer MiniLM student, "
          f"{args.n} texts, max length {args.max_length}, batch 32, {torch.get_num_threads()} thread(s), best of "
          f"{args.rounds} ({how})\n")
    print("| epochs | hf-aft total (s) | of which extraction (s) | online total (s) | hf-aft / online |")
    print("|---:|---:|---:|---:|---:|")
    for e in epochs:
        print(f"| {e} | {best['hf-aft'][e]:.1f} | {min(extract):.1f} | {best['online'][e]:.1f} "
              f"| {best['hf-aft'][e] / best['online'][e]:.3f} |")
    hf_epoch = (best["hf-aft"][max(epochs)] - best["hf-aft"][min(epochs)]) / max(1, max(epochs) - min(epochs))
    on_epoch = (best["online"][max(epochs)] - best["online"][min(epochs)]) / max(1, max(epochs) - min(epochs))
    if not args.separate and max(epochs) > min(epochs):
        saved = on_epoch - hf_epoch  # what the teacher costs per epoch online
        pays = f"caching has paid for its extraction after {min(extract) / saved:.2f} epochs" if saved > 0 else \
            "no saving per epoch measured"
        print(f"\nPer epoch after the first: hf-aft {hf_epoch:.1f} s, online {on_epoch:.1f} s; {pays}.")
    print(f"Mean transfer loss per epoch (the same loss on the same batches): hf-aft "
          f"{[round(x, 5) for x in losses['hf-aft'][:3]]}, online {[round(x, 5) for x in losses['online'][:3]]}.")
    print(f"Load average (1/5/15 min) at the end: {os.getloadavg()} on {os.cpu_count()} CPUs.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "online.json").write_text(json.dumps({"args": vars(args), "runs_s": runs, "extract_s": extract,
                                                     "transfer_losses": losses}, indent=2))


if __name__ == "__main__":
    main()
