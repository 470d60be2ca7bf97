"""How `--beta auto` judges its candidates on the validation split (`beta_search.py` runs them).

- The score: a per-example score on the validation split, higher is better, and its mean: for single-label
  classification whether the example is right (the mean is the accuracy); for multi-label classification the
  example's F1 between predicted and true label sets (1 when both are empty; the mean is scikit-learn's "samples"
  F1); for regression the negative squared error, averaged over the targets when there are several (the mean is
  minus the MSE, in the training split's standardised units); for token classification the sentence's entity F1
  (seqeval's chunks of its labelled words, 1 when neither side has an entity). Also the mean loss of the task
  (cross-entropy, binary cross-entropy or squared error).
- The plateau: a candidate is on it while it does not beat a constant prediction by more than one standard error
  (the paired test below, against that constant): the validation split's most frequent class, each label's
  majority value (multi-label), the validation targets' mean (regression), or the most frequent tag on every word
  (token classification). A student that predicts one class is
  there, and so is one at chance that predicts all ten: such a candidate has learned nothing yet, so its rank says
  nothing about its beta.
- The choice, the one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani and Friedman, "The Elements of
  Statistical Learning", 7.10): the largest beta whose validation score at half of training is within one standard
  error of the best candidate's. beta weighs a prior (the teacher's features), so the largest beta is the most
  regularised model the validation data cannot tell from the best. The standard error is that of the paired
  difference on the same examples, under "no difference": with d_i the best candidate's score on example i minus
  this one's, the candidate is within it when sum(d) <= sqrt(sum(d^2)). For right/wrong scores, with w the examples
  the best candidate gets right and this one wrong and l the reverse, that is l - w <= sqrt(w + l): McNemar's test.
  A candidate still on the plateau is never chosen; when all are, the default stays (nothing could be compared).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import DEFAULT_BETA
from .targets import MULTI, REGRESSION, SINGLE, TOKEN, is_token_model

RULE = ("the largest beta whose validation score at half of training is within one standard error of the best "
        "candidate's: sum(best - this) <= sqrt(sum((best - this)^2)) over the validation examples, paired by "
        "example (McNemar for right/wrong)")
METRIC = {SINGLE: "accuracy", MULTI: "example F1", REGRESSION: "MSE", TOKEN: "sentence entity F1"}
CONSTANT = {SINGLE: "the most frequent class", MULTI: "each label's majority value", REGRESSION: "the mean target",
            TOKEN: "the most frequent tag on every word"}


def sentence_entity_f1(predicted: np.ndarray, labels: np.ndarray, names: list[str]) -> np.ndarray:
    """[n] float64: per row of `predicted` and `labels` ([n, tokens] class ids, -100 where no word starts), the F1
    between the entities (seqeval's `get_entities` chunks of `metrics.entity_tags(names)`) of its labelled words; 1
    when neither side has one."""
    from seqeval.metrics.sequence_labeling import get_entities

    from .metrics import entity_tags

    tags, scores = entity_tags(names), []
    for guess, truth in zip(np.asarray(predicted), np.asarray(labels), strict=True):
        keep = truth != -100
        true, found = ({*get_entities([tags[t] for t in row[keep]])} for row in (truth, guess))
        scores.append(2 * len(true & found) / (len(true) + len(found)) if true or found else 1.0)
    return np.asarray(scores, dtype=np.float64)


def example_scores(logits: torch.Tensor, labels: torch.Tensor, problem_type: str = SINGLE,
                   threshold: float = 0.5, names: list[str] | None = None) -> np.ndarray:
    """Per validation example, higher is better (module docstring): [n] float64. `logits` [n, classes] (regression:
    [n, 1] or [n]; token classification: [n, tokens, classes], scored with the class `names`), `labels` [n] class
    ids, [n, classes] multi-hot, [n] targets, or [n, tokens] class ids (-100: no word starts there)."""
    if problem_type == TOKEN:
        return sentence_entity_f1(logits.argmax(-1).numpy(), labels.numpy(), names)
    if problem_type == REGRESSION:  # several targets: the mean over them
        labels = labels.double().reshape(len(labels), -1)
        return -((logits.double().reshape(labels.shape) - labels) ** 2).mean(-1).numpy()
    if problem_type == MULTI:
        predicted, true = torch.sigmoid(logits.float()) >= threshold, labels >= 0.5
        both, either = (predicted & true).sum(-1).double(), predicted.sum(-1).double() + true.sum(-1).double()
        return torch.where(either > 0, 2 * both / either.clamp(min=1), torch.ones_like(both)).numpy()
    return (logits.argmax(-1) == labels.long()).double().numpy()


def constant_scores(labels: torch.Tensor, problem_type: str = SINGLE, names: list[str] | None = None) -> np.ndarray:
    """`example_scores` of the best constant prediction: the most frequent class, each label's majority value, the
    targets' mean, or the most frequent tag on every word."""
    if problem_type == TOKEN:
        labels = labels.long()
        tagged = labels[labels != -100]
        constant = int(torch.bincount(tagged).argmax()) if tagged.numel() else 0
        return sentence_entity_f1(torch.full_like(labels, constant).numpy(), labels.numpy(), names)
    if problem_type == REGRESSION:
        labels = labels.double().reshape(len(labels), -1)
        return -((labels - labels.mean(0)) ** 2).mean(-1).numpy()
    if problem_type == MULTI:
        majority = ((labels >= 0.5).double().mean(0) > 0.5).double()
        logits = (majority * 2 - 1).expand_as(labels) * 10  # sigmoid far from the threshold
        return example_scores(logits, labels, MULTI)
    labels = labels.long()
    return (labels == torch.bincount(labels).argmax()).double().numpy()


def task_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str = SINGLE) -> float:
    """The mean task loss on the validation split (nats for the classifications, squared units for regression)."""
    functional = torch.nn.functional
    if problem_type == TOKEN:
        return functional.cross_entropy(logits.float().flatten(0, -2), labels.long().reshape(-1),
                                        ignore_index=-100).item()
    if problem_type == REGRESSION:
        return functional.mse_loss(logits.float().reshape(-1), labels.float().reshape(-1)).item()
    if problem_type == MULTI:
        return functional.binary_cross_entropy_with_logits(logits.float(), labels.float()).item()
    return functional.cross_entropy(logits.float(), labels.long()).item()


def score_candidate(trainer, validation) -> dict:
    """The validation score ("score", the mean of "example_scores", see the module docstring), the per-example
    scores, how many classes it predicts (single-label; else None), whether it beats the best constant prediction
    ("above_majority", `paired`), and the mean task loss ("loss")."""
    from transformers import PretrainedConfig

    model = getattr(trainer, "model", None)
    config = getattr(model, "config", None)
    config = config if isinstance(config, PretrainedConfig) else PretrainedConfig()
    problem_type = TOKEN if is_token_model(model) else getattr(config, "problem_type", None) or SINGLE
    threshold = float(getattr(config, "decision_threshold", 0.5) or 0.5)
    output = trainer.predict(validation)
    logits = torch.as_tensor(output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions)
    labels = torch.as_tensor(output.label_ids)
    names = [config.id2label[i] for i in range(logits.shape[-1])] if problem_type == TOKEN else None
    scores = example_scores(logits, labels, problem_type, threshold, names)
    _, _, constant_within = paired({"example_scores": constant_scores(labels, problem_type, names)},
                                   {"example_scores": scores})  # the constant prediction against this one
    classes = int(logits.argmax(-1).unique().numel()) if problem_type == SINGLE else None
    return {"score": float(scores.mean()), "example_scores": scores, "predicted_classes": classes,
            "above_majority": not constant_within, "loss": task_loss(logits, labels, problem_type),
            "problem_type": problem_type}


def metric_of(records: list[dict]) -> str:
    """The metric the scored candidates were compared in ("accuracy", "example F1", "MSE", "sentence entity F1")."""
    return METRIC[next((r["problem_type"] for r in records if "problem_type" in r), SINGLE)]


def shown_score(record: dict) -> str:
    """"accuracy 0.83", "example F1 0.61", "MSE 0.412": the candidate's score as its metric reads."""
    problem_type = record.get("problem_type", SINGLE)
    value = -record["score"] if problem_type == REGRESSION else record["score"]
    return f"{METRIC[problem_type]} {value:.{3 if problem_type == REGRESSION else 2}f}"


def on_plateau(records: list[dict]) -> bool:
    """No scored candidate beats the best constant prediction by more than one standard error."""
    scored = [r for r in records if r.get("score") is not None]
    return bool(scored) and not any(r["above_majority"] for r in scored)


def rank_key(record: dict) -> tuple:
    return record["score"], -record["loss"], -record["beta"]  # score, then lower task loss, then smaller beta


def paired(record: dict, best: dict) -> tuple[int, int, bool]:
    """(wins, losses, within one standard error) of `record` against `best`, paired by validation example."""
    mine, theirs = (np.asarray(r["example_scores"], dtype=np.float64) for r in (record, best))
    wins, losses = int((mine > theirs).sum()), int((mine < theirs).sum())
    difference = theirs - mine
    return wins, losses, bool(difference.sum() <= math.sqrt(float((difference**2).sum())) + 1e-9)


def _within_one_se(record: dict, best: dict) -> bool:
    """Fills `record`'s wins/losses against the best candidate and whether it is within one standard error."""
    wins, losses, within = paired(record, best)
    record.update(wins_vs_best=wins, losses_vs_best=losses, within_one_se=within)
    return within


def _stalls(records: list[dict]) -> str:
    """"; stalled: beta 0.1 at step 20, ..." for the candidates whose stall detector fired, else ""."""
    stalled = [f"beta {r['beta']:g} at step {r['steps']}" for r in records if r["status"] == "stalled"]
    return f"; stalled: {', '.join(stalled)}" if stalled else ""


def _type(records: list[dict]) -> str:
    return records[0].get("problem_type", SINGLE)


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
                              f"than always predicting {CONSTANT[_type(finished)]} (the student's initial plateau"
                              f"{_stalls(records)}), so they could not be told apart; the final run starts from the "
                              "beginning"), None
    best = max(finished, key=rank_key)
    within = [r for r in learned if _within_one_se(r, best)]
    chosen = max(within, key=lambda r: r["beta"]) if within else max(learned, key=rank_key)  # else: the best learned
    stl = next((r for r in finished if r["beta"] == 0.0 and r is not chosen and r is not best), None)
    versus = f", plain fine-tuning {shown_score(stl).split()[-1]}" if stl else ""
    best_note = "the best" if chosen is best else (f"within one standard error of the best, "
                                                   f"{shown_score(best).split()[-1]} (beta {best['beta']:g})")
    compared = ", ".join(f"{r['beta']:g}" for r in learned)
    left_out = ", ".join(f"{r['beta']:g}" for r in finished if r not in learned)
    left_out = f" ({left_out}: no better than {CONSTANT[_type(finished)]})" if left_out else ""
    return chosen["beta"], (f"chosen by --beta auto: validation {shown_score(chosen)} at half of training, "
                            f"{best_note}{versus}; the largest such beta among {compared}{left_out}"), chosen
