"""Per-group results (`--group_column`): did the transfer change how the student treats the groups of its data, and
did it take on the teacher's mistakes? Pure functions of class-id predictions, labels and group values (numpy arrays
[rows], in the evaluation split's row order); `group_report.py` runs them after training, `hf-aft check-updates` and
`hf-aft audit` on a finished run.

- **Per group**: rows, accuracy with its binomial standard error sqrt(p (1 - p) / n), macro-F1 over the classes the
  group's labels hold (for a group of one class, as by the label column, precision is 1 by construction: read its
  accuracy, the class's recall). The worst group and the largest gap (best minus worst accuracy) are over the groups
  judged, when there are two at least.
- **Small groups** (fewer than `min_rows` rows) are pooled into one group, "(pooled)", and named in a warning:
  dropping them would hide rows, and refusing would stop every run whose column has a long tail. "(pooled)" is never
  flagged or called the worst group: it mixes groups. A single small group keeps its name, and is not judged either.
- **Against a baseline** (plain fine-tuning, the old student) on the same rows, group by group: wins (rows only this
  model gets right) and losses (only the baseline), and McNemar's exact test on them (a binomial test of the
  discordant rows, `scipy.stats.binomtest`; McNemar 1947). The p-values of one column's groups are adjusted with
  Benjamini-Hochberg (`scipy.stats.false_discovery_control`), so that a column of many groups does not flag some by
  chance alone: a group is **flagged** when this model is worse there and the adjusted p-value is below `ALPHA`.
- **Inherited errors** (the teacher probe's predictions beside the student's): the share of the student's errors the
  probe also makes, and on the rows where the probe is wrong, the share where the student gives the probe's wrong
  answer. A student that took on the teacher's mistakes shows a rise in both over plain fine-tuning; errors that are
  independent of the probe's would share it about the probe's error rate. What they cannot tell: the probe is a linear
  read-out of the teacher's features, not the teacher; rows that are hard for every model are shared errors for any
  two models, so only the change against the baseline speaks of transfer.
"""

from __future__ import annotations

import numpy as np

from .errors import AFTError
from .option_checks import check_count

OTHER = "(pooled)"  # the small groups, pooled (in parentheses: no column value is mistaken for it)
MISSING = "(missing)"  # rows whose group value is missing
MIN_GROUP_ROWS = 30
ALPHA = 0.05


def check_min_rows(min_rows, name: str = "min_rows") -> None:
    """`min_rows` (`name`: `--group_min_rows` on the command line) is a whole number >= 1."""
    check_count(min_rows, name)


def check_rows(**arrays) -> None:
    """Each array (name -> values, None for one not given) holds one value per row, as the first does.

    Raises:
        AFTError: naming each array's length.
    """
    lengths = {name: len(values) if hasattr(values, "__len__") else 1 for name, values in arrays.items()
               if values is not None}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} {length}" for name, length in lengths.items())
        raise AFTError(f"the arrays have different numbers of rows ({shown}): give one value per row of the "
                       "evaluation split, each in its row order.")


def group_values(values) -> np.ndarray:
    """A column's values as group names (strings; a missing value is "(missing)")."""
    return np.array([MISSING if v is None else str(v) for v in values], dtype=str)


def pool_small_groups(groups: np.ndarray, min_rows: int = MIN_GROUP_ROWS) -> tuple[np.ndarray, list[str]]:
    """(groups with those of fewer than `min_rows` rows renamed "(pooled)", the small groups' names). A single small
    group keeps its name (pooling it alone would only hide it); it is not judged either."""
    groups = np.asarray(groups).astype(str)
    names, counts = np.unique(groups, return_counts=True)
    small = [str(n) for n, c in zip(names, counts, strict=True) if c < min_rows]
    return (np.where(np.isin(groups, small), OTHER, groups) if len(small) > 1 else groups), small


def _macro_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro", labels=np.unique(labels), zero_division=0))


def scores(predictions: np.ndarray, labels: np.ndarray) -> dict:
    """rows, accuracy, its standard error and macro-F1 (over the classes in `labels`) of class-id predictions."""
    correct = predictions == labels
    accuracy = float(correct.mean())
    return {"rows": int(correct.size), "accuracy": accuracy,
            "accuracy_se": float(np.sqrt(accuracy * (1 - accuracy) / correct.size)),
            "macro_f1": _macro_f1(predictions, labels)}


def mcnemar(model_correct: np.ndarray, baseline_correct: np.ndarray) -> dict:
    """wins, losses and McNemar's exact two-sided p-value of a model against a baseline on the same rows."""
    from scipy.stats import binomtest

    wins = int((model_correct & ~baseline_correct).sum())
    losses = int((~model_correct & baseline_correct).sum())
    p_value = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "p_value": float(p_value)}


def _adjusted(p_values: list[float]) -> list[float]:
    from scipy.stats import false_discovery_control

    return [float(p) for p in false_discovery_control(p_values, method="bh")] if p_values else []


def group_results(predictions, labels, groups: np.ndarray, baseline=None, min_rows: int = MIN_GROUP_ROWS) -> dict:
    """One column's per-group results.

    Args:
        predictions: class ids [rows].
        labels: the true class ids [rows].
        groups: group names [rows] (`group_values`).
        baseline: the baseline's class ids on the same rows [rows], or None.
        min_rows: smaller groups are not judged (pooled into "(pooled)" when there are several).

    Returns:
        {"groups": {name: scores, plus with a baseline: baseline_accuracy, change, wins, losses, p_value, and for
        the groups judged adjusted_p_value and flagged}, "pooled": [the small groups' names], "worst": name or None,
        "largest_gap": float or None, "flagged": [names]}; groups in order of rows, largest first, "(pooled)" last.

    Raises:
        AFTError: arrays of different lengths, `min_rows` not a whole number >= 1.
    """
    check_rows(predictions=predictions, labels=labels, groups=groups, baseline=baseline)
    check_min_rows(min_rows)
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    pooled_groups, pooled = pool_small_groups(groups, min_rows)
    names, counts = np.unique(pooled_groups, return_counts=True)
    order = sorted(zip(names, counts, strict=True), key=lambda nc: (nc[0] == OTHER, -nc[1], nc[0]))
    rows = {}
    for name, _ in order:
        mask = pooled_groups == name
        rows[str(name)] = scores(predictions[mask], labels[mask])
        if baseline is not None:
            base = np.asarray(baseline)[mask]
            rows[str(name)].update(baseline_accuracy=float((base == labels[mask]).mean()),
                                   **mcnemar(predictions[mask] == labels[mask], base == labels[mask]))
            rows[str(name)]["change"] = rows[str(name)]["accuracy"] - rows[str(name)]["baseline_accuracy"]
    judged = {n: r for n, r in rows.items() if n != OTHER and r["rows"] >= min_rows}
    if baseline is not None:
        for name, adjusted in zip(judged, _adjusted([r["p_value"] for r in judged.values()]), strict=True):
            rows[name].update(adjusted_p_value=adjusted,
                              flagged=bool(rows[name]["losses"] > rows[name]["wins"] and adjusted < ALPHA))
    accuracies = {n: r["accuracy"] for n, r in judged.items()}
    worst = min(accuracies, key=accuracies.get) if len(accuracies) > 1 else None  # one group: no worst to name
    return {"groups": rows, "pooled": pooled, "worst": worst,
            "largest_gap": max(accuracies.values()) - min(accuracies.values()) if len(accuracies) > 1 else None,
            "flagged": [n for n, r in rows.items() if r.get("flagged")]}


def inherited_errors(predictions, probe_predictions, labels, baseline=None) -> dict:
    """How the model's errors overlap the teacher probe's (all arrays: class ids [rows]).

    Returns:
        {"rows", "errors", "probe_error_rate", "shared_error_share" (of the model's errors, the share the probe also
        makes), "copied_share" (of the rows the probe gets wrong, the share where the model gives the probe's answer),
        and with a baseline the same two figures for it (`baseline_...`), their changes, and McNemar's test on the
        probe-wrong rows of copying (wins: the baseline copies the probe's mistake and this model does not)}.
        A share (the probe's error rate too) is None where it divides by zero rows.

    Raises:
        AFTError: arrays of different lengths.
    """
    check_rows(predictions=predictions, probe_predictions=probe_predictions, labels=labels, baseline=baseline)
    predictions, probe, labels = np.asarray(predictions), np.asarray(probe_predictions), np.asarray(labels)
    probe_wrong = probe != labels
    result = {"rows": int(labels.size), "probe_error_rate": float(probe_wrong.mean()) if labels.size else None,
              **_overlap(predictions, probe, labels, "")}
    if baseline is not None:
        result.update(_overlap(np.asarray(baseline), probe, labels, "baseline_"))
        for share in ("shared_error_share", "copied_share"):
            mine, theirs = result[share], result[f"baseline_{share}"]
            result[f"{share}_change"] = None if mine is None or theirs is None else mine - theirs
        copied, baseline_copied = predictions == probe, np.asarray(baseline) == probe
        result["copied_test"] = mcnemar(~copied[probe_wrong], ~baseline_copied[probe_wrong])
    return result


def _overlap(predictions: np.ndarray, probe: np.ndarray, labels: np.ndarray, prefix: str) -> dict:
    wrong, probe_wrong = predictions != labels, probe != labels
    return {f"{prefix}errors": int(wrong.sum()),
            f"{prefix}shared_error_share": float((wrong & probe_wrong).sum() / wrong.sum()) if wrong.any() else None,
            f"{prefix}copied_share": (float((predictions == probe)[probe_wrong].mean()) if probe_wrong.any()
                                      else None)}
