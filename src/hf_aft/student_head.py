"""The student's classification head against the data's classes. A student checkpoint whose head already names the
data's classes, in another order, keeps what each of its rows learned: the rows are put in the data's order, instead
of the names being overwritten (which would train a "top" row as "bottom")."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from .data import Labels
from .errors import AFTError, warn_once

logger = logging.getLogger(__name__)

HEAD_PARTS = ("classifier", "score", "pre_classifier", "pooler", "head")


def named_classes(id2label: dict | None) -> list[str] | None:
    """A config's class names in id order; None for transformers' placeholders (LABEL_0, ...) or none."""
    if not id2label:
        return None
    names = [str(id2label.get(i, id2label.get(str(i)))) for i in range(len(id2label))]
    return None if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names


def keep_head_rows(model, saved: list[str] | None, names: list[str]) -> bool:
    """When the checkpoint's head names the same classes as `names` in another order (`saved`, in its id order),
    reorder the rows of the head's output layer (the last `nn.Linear` of the head with one output per class) to
    `names`' order. Returns whether it did; a head named for other classes is said in one line (its rows are then
    renamed as they are).

    Raises:
        AFTError: the head's output layer cannot be found (no Linear of the head with len(names) outputs).
    """
    if not saved or saved == names:
        return False
    if sorted(saved) != sorted(names):  # a head trained for other classes: its rows are only a starting point
        warn_once(logger, f"hf-aft: the student's head was trained for other classes ({saved[:10]}) than the data's "
                          f"({names[:10]}): its rows are named the data's classes in id order and learn them from "
                          "there.")
        return False
    layers = [module for name, module in model.named_modules() if isinstance(module, nn.Linear)
              and module.out_features == len(names) and any(part in name.split(".") for part in HEAD_PARTS)]
    if not layers:
        raise AFTError(f"the student's head names the classes {saved[:10]}, the data's order is {names[:10]}, and its "
                       "output layer was not found to reorder: save the student with id2label in the data's order, "
                       "or give a student without a trained head.")
    order = torch.tensor([saved.index(name) for name in names])
    with torch.no_grad():
        layers[-1].weight.copy_(layers[-1].weight[order])
        if layers[-1].bias is not None:
            layers[-1].bias.copy_(layers[-1].bias[order])
    warn_once(logger, f"hf-aft: the student's head names the classes in another order ({saved[:10]}): its rows are "
                      f"reordered to the data's ({names[:10]}), keeping what each learned.")
    return True


def check_fold_scale(mean, std, outputs: int) -> None:
    """`student.fold_target_scale`'s `mean` and `std`: finite numbers, `std` > 0, each one number or one per output
    of the head (`outputs`): a NaN made the head NaN, a zero std a constant, another length a raw torch error.

    Raises:
        AFTError: naming the value and what it should be.
    """
    try:
        values = {"mean": np.asarray(mean, dtype=np.float64).reshape(-1),
                  "std": np.asarray(std, dtype=np.float64).reshape(-1)}
    except (TypeError, ValueError) as error:
        raise AFTError(f"fold_target_scale's mean and std must be numbers (got {mean!r}, {std!r}).") from error
    for name, value in values.items():
        if value.size not in (1, outputs):
            raise AFTError(f"fold_target_scale's {name} has {value.size} values for a head of {outputs} outputs: "
                           f"give one number, or one per output.")
        if not np.isfinite(value).all() or name == "std" and (value <= 0).any():
            raise AFTError(f"fold_target_scale's {name} must be finite{' and > 0' * (name == 'std')} (got "
                           f"{value.tolist()}): pass the training targets' (RegressionTargets.mean and .std).")


def head_labels(labels):
    """`load_student`'s `labels` as the head reads them: None, a `Labels` (or other targets: anything with `names`
    and `problem_type`), or a list of class names in id order, made a single-label `Labels`.

    Raises:
        AFTError: another type, or a name given twice.
    """
    if labels is None or hasattr(labels, "names") and hasattr(labels, "problem_type"):
        return labels
    if not isinstance(labels, (list, tuple)):
        raise AFTError(f"labels must be a Labels (load_labelled_splits(...).labels) or a list of class names, not "
                       f"{type(labels).__name__}.")
    names = [str(name) for name in labels]
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise AFTError(f"labels name class {twice!r} twice: give each class name once, in id order.")
    return Labels(names, "label", False)
