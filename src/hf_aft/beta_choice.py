"""How `--beta auto` judges its candidates on the validation split (`beta_search.py` runs them).

- The score: validation accuracy, which examples a candidate gets right, and the mean cross-entropy of the true labels.
- The plateau: a candidate is on it while it does not beat always predicting the validation split's most frequent
  class by more than one standard error (the paired test below, against that constant prediction). A student that
  predicts one class is there, and so is one at chance that predicts all ten: such a candidate has learned nothing
  yet, so its rank says nothing about its beta.
- The choice, the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani and Friedman, "The Elements of
  Statistical Learning", 7.10): the largest beta whose validation accuracy at half of training is within one standard
  error of the best candidate's. beta weighs a prior (the teacher's features), so the largest beta is the most
  regularised model the validation data cannot tell from the best. The standard error is that of the paired
  difference on the same examples: with w the examples the best candidate gets right and this one wrong, and l the
  reverse, the difference of accuracies is (w - l) / n and its standard error under "no difference" is
  sqrt(w + l) / n (McNemar's test), so a candidate is within it when w - l <= sqrt(w + l). A candidate still on the
  plateau is never chosen; when all are, the default stays (nothing could be compared).
"""

from __future__ import annotations

import math

import torch

from .config import DEFAULT_BETA

RULE = ("the largest beta whose validation accuracy at half of training is within one standard error of the best "
        "candidate's: (losses - wins) <= sqrt(wins + losses) against it, paired by example (McNemar)")


def score_candidate(trainer, validation) -> dict:
    """Validation accuracy ("score"), which examples it gets right ("correct", bool [n]), how many classes it
    predicts, whether it beats always predicting the most frequent class ("above_majority", `paired`), and the mean
    cross-entropy of the true labels ("loss", nats)."""
    output = trainer.predict(validation)
    logits = torch.as_tensor(output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions)
    labels = torch.as_tensor(output.label_ids).long()
    predicted = logits.argmax(-1)
    correct = (predicted == labels).numpy()
    majority = {"correct": (labels == torch.bincount(labels).argmax()).numpy()}
    _, _, majority_within = paired(majority, {"correct": correct})  # the constant prediction against this one
    return {"score": float(correct.mean()), "correct": correct, "predicted_classes": int(predicted.unique().numel()),
            "above_majority": not majority_within,
            "loss": torch.nn.functional.cross_entropy(logits.float(), labels).item()}


def on_plateau(records: list[dict]) -> bool:
    """No scored candidate beats always predicting the most frequent class by more than one standard error."""
    scored = [r for r in records if r.get("score") is not None]
    return bool(scored) and not any(r["above_majority"] for r in scored)


def rank_key(record: dict) -> tuple:
    return record["score"], -record["loss"], -record["beta"]  # accuracy, then lower cross-entropy, then smaller beta


def paired(record: dict, best: dict) -> tuple[int, int, bool]:
    """(wins, losses, within one standard error) of `record` against `best`, paired by validation example."""
    wins = int((record["correct"] & ~best["correct"]).sum())
    losses = int((~record["correct"] & best["correct"]).sum())
    return wins, losses, bool(losses - wins <= math.sqrt(wins + losses))


def _within_one_se(record: dict, best: dict) -> bool:
    """Fills `record`'s wins/losses against the best candidate and whether it is within one standard error."""
    wins, losses, within = paired(record, best)
    record.update(wins_vs_best=wins, losses_vs_best=losses, within_one_se=within)
    return within


def _stalls(records: list[dict]) -> str:
    """"; stalled: beta 0.1 at step 20, ..." for the candidates whose stall detector fired, else ""."""
    stalled = [f"beta {r['beta']:g} at step {r['steps']}" for r in records if r["status"] == "stalled"]
    return f"; stalled: {', '.join(stalled)}" if stalled else ""


def choose_beta(records: list[dict]) -> tuple[float, str, dict | None]:
    """The one-standard-error rule (module docstring) over the candidates scored at rung 2; also fills their wins and
    losses against the best one. Returns (beta, why, the chosen record or None when the default is kept because no
    candidate could be compared: the final run then starts from the beginning)."""
    finished = [r for r in records if r["status"] == "at rung 2"]
    if not finished:
        return DEFAULT_BETA, ("chosen by --beta auto: the default, kept; no candidate reached half of training"
                              f"{_stalls(records)}"), None
    learned = [r for r in finished if r["above_majority"]]  # else: no better than the most frequent class
    if not learned:
        return DEFAULT_BETA, ("chosen by --beta auto: the default, kept; at half of training no candidate was better "
                              "than always predicting the most frequent class (the student's initial plateau"
                              f"{_stalls(records)}), so they could not be told apart; the final run starts from the "
                              "beginning"), None
    best = max(finished, key=rank_key)
    within = [r for r in learned if _within_one_se(r, best)]
    chosen = max(within, key=lambda r: r["beta"]) if within else max(learned, key=rank_key)  # else: the best learned
    stl = next((r for r in finished if r["beta"] == 0.0 and r is not chosen and r is not best), None)
    versus = f", plain fine-tuning {stl['score']:.2f}" if stl else ""
    best_note = "the best" if chosen is best else (f"within one standard error of the best, {best['score']:.2f} "
                                                   f"(beta {best['beta']:g})")
    compared = ", ".join(f"{r['beta']:g}" for r in learned)
    left_out = ", ".join(f"{r['beta']:g}" for r in finished if r not in learned)
    left_out = f" ({left_out}: no better than the most frequent class)" if left_out else ""
    return chosen["beta"], (f"chosen by --beta auto: validation accuracy {chosen['score']:.2f} at half of training, "
                            f"{best_note}{versus}; the largest such beta among {compared}{left_out}"), chosen
