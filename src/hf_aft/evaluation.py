"""A finished run, read back: its folder (a local output dir, or the snapshot of a Hub model repo), its student (a PEFT
adapter merged into its base on request), its evaluation split reloaded from the dataset its recipe names, the
student's logits on that split, and the scores `check-updates` and `export` compare (accuracy, macro-F1, per-class
recall, agreement). Used by `hf-aft check-updates` and `hf-aft export`; nothing here writes into the run.

A token-classification run is read back word by word: its logits are those at each word's first sub-token (the
position it was trained to classify), one row per word of the split ([all words, classes]); a word the student's
max length cut gets zero logits (class 0); the scores are per word."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from .data import load_labelled_splits
from .errors import AFTError, one_line
from .hub_reach import hub_answer, note_cached, offline_if_unreachable
from .recipe import read_card_inputs, read_recipe
from .targets import MULTI, REGRESSION, SINGLE, TOKEN, model_problem_type
from .teachers.loading import teach_token_limit
from .tokens import encode_padded
from .words import split_words


def run_folder(source: str) -> tuple[str, bool]:
    """(folder, is_hub_copy): `source` itself when it is a local folder, else the snapshot of the Hub model repo
    `source` (downloaded with huggingface_hub into its cache).

    Raises:
        AFTError: neither a folder nor a Hub repo that can be downloaded.
    """
    if os.path.isdir(source):
        return source, False
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise AFTError(f"{source!r} is neither a folder nor a Hub model id (ORG/NAME): give the output dir of a run "
                       "or its Hub model id.")
    from huggingface_hub import snapshot_download

    offline_if_unreachable()
    try:
        folder = snapshot_download(source)
    except Exception as error:
        raise AFTError(f"{source!r} is not a local folder and could not be downloaded from the Hub ("
                       f"{hub_answer(one_line(error))}): give the output dir of a run or its Hub model id.") from error
    note_cached(f"run {source}")
    return folder, True


def load_run_student(folder: str, merge_peft: bool = False):
    """(model in eval mode on CPU, tokenizer or image processor) of a finished run. A PEFT student loads with peft;
    `merge_peft=True` merges its adapter into the base weights (`merge_and_unload`), giving a plain model."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    recipe = read_recipe(folder)
    image, tokens = bool(recipe.get("image_column")), recipe.get("problem_type") == TOKEN
    auto_model, auto_processor = ((AutoModelForImageClassification, AutoImageProcessor) if image else
                                  (AutoModelForTokenClassification if tokens else AutoModelForSequenceClassification,
                                   AutoTokenizer))
    try:
        processor = auto_processor.from_pretrained(folder)
        if os.path.exists(os.path.join(folder, "adapter_config.json")):
            model = _load_peft(folder, auto_model, image)
            model = model.merge_and_unload() if merge_peft else model
        else:
            model = auto_model.from_pretrained(folder)
    except AFTError:
        raise
    except Exception as error:
        raise AFTError(f"could not load the student in {folder!r}: {one_line(error)}") from error
    if getattr(processor, "pad_token", "") is None:
        processor.pad_token = processor.eos_token or processor.unk_token
    teach_token_limit(model, processor)  # the run's --max_length is then cut at the student's position table
    return model.cpu().eval(), processor


def _load_peft(folder: str, auto_model, image: bool):
    from peft import AutoPeftModelForSequenceClassification, PeftConfig, PeftModel

    if auto_model.__name__ == "AutoModelForTokenClassification":  # its head's size is not in the adapter's config
        raise AFTError(f"{folder!r} holds a LoRA token classifier: reading it back (export, check-updates) is not "
                       "supported yet; load it with peft as its card shows, or train without --use_peft.")
    names = _run_class_names(folder)  # the adapter holds no model config: peft loads the base's (LABEL_0, ...)
    named = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
    if not image and auto_model.__name__ == "AutoModelForSequenceClassification":
        return AutoPeftModelForSequenceClassification.from_pretrained(folder, **named)
    base = auto_model.from_pretrained(PeftConfig.from_pretrained(folder).base_model_name_or_path, **named)
    return PeftModel.from_pretrained(base, folder)


def _run_class_names(folder: str) -> list[str]:
    """The class names a run's card was written with (model_card.json), or none."""
    try:
        return [str(name) for name in (read_card_inputs(folder) or {}).get("labels") or []]
    except (OSError, ValueError, AttributeError):
        return []


# A run's recipe names the splits and columns, which export, check-updates and audit take no flag for.
RECIPE_WAY_OUT = "the run was trained with it (recipe.yaml): give --dataset_name data that has it"


def eval_split(folder: str, dataset_name: str | None = None):
    """(eval split with the targets in `labels` (class ids, multi-hot rows, or regression targets in the data's
    units) beside its columns, the label column's included; input column; image
    column or None; max length) as the run's recipe defines them; `dataset_name` replaces the recipe's dataset (e.g.
    the same data at another path).

    Raises:
        AFTError: no recipe, a dataset that cannot be loaded, or no evaluation split.
    """
    recipe = read_recipe(folder)
    image_column = recipe.get("image_column")
    column = image_column or recipe.get("text_column", "text")
    dataset_name = dataset_name or recorded_dataset(folder) or recipe["dataset_name"]
    splits = load_labelled_splits(dataset_name, recipe.get("dataset_config"),
                                  recipe.get("train_split", "train"), recipe.get("eval_split"), column,
                                  recipe.get("label_column", "label"), problem_type=recipe.get("problem_type"),
                                  way_out=RECIPE_WAY_OUT)
    if splits.eval is None:
        raise AFTError(f"the run's dataset {dataset_name!r} has no evaluation split to compare on: pass "
                       "--dataset_name with a test or validation split.")
    targets, label_column = splits.labels, splits.labels.column
    if targets.problem_type == REGRESSION:  # the saved student predicts in the data's units (fold_target_scale)
        encoded = targets.encode(splits.eval, "eval", in_data_units=True)
    else:
        encoded = targets.encode(splits.eval)
    if label_column not in encoded.column_names:  # kept beside `labels`: a group column can name it
        encoded = encoded.add_column(label_column, splits.eval[label_column],
                                     feature=splits.eval.features[label_column])
    return encoded, column, image_column, recipe.get("max_length", 128)


def recorded_dataset(folder: str) -> str | None:
    """The run's local data at the absolute path its audit.json recorded, where the recipe's relative name leads
    elsewhere from here (export or check-updates run from another directory); None: the recipe's name stands.

    Raises:
        AFTError: local data gone from both, naming where it was and `--dataset_name`."""
    try:
        with open(os.path.join(folder, "audit.json")) as f:
            data = json.load(f).get("dataset") or {}
    except (OSError, ValueError, AttributeError):
        return None
    spec, path = data.get("name"), data.get("path")
    if not (spec and path) or "," in spec or os.path.abspath(os.path.expanduser(spec)) == path:  # files: as named
        return None
    if not os.path.exists(path):
        raise AFTError(f"the run's dataset {spec!r} is gone from {path}, where it read it: pass --dataset_name with "
                       "where it is now.")
    return path


def model_inputs(processor, batch: list, image_column: str | None, max_length: int, framework: str = "pt") -> dict:
    """A batch of texts (padded, truncated to `max_length`), word lists or images as the student's inputs."""
    if batch and isinstance(batch[0], list):  # token classification: words, split as in training
        return dict(processor.pad(split_words(processor, batch, max_length)[0], return_tensors=framework))
    if image_column:
        from .images import to_rgb

        return dict(processor(images=[to_rgb(x, image_column) for x in batch], return_tensors=framework))
    return dict(encode_padded(processor, batch, max_length, framework))  # an empty text: one token (tokens.py)


@torch.inference_mode()
def predict_logits(model, processor, split, column: str, image_column: str | None, max_length: int,
                   batch_size: int = 64) -> np.ndarray:
    """The student's logits [rows, classes] on `split` (float32, CPU)."""
    out = []
    for start in range(0, len(split), batch_size):
        batch = split[start : start + batch_size][column]
        logits = model(**model_inputs(processor, batch, image_column, max_length)).logits.float().numpy()
        out.append(per_word(logits, processor, batch, max_length) if logits.ndim == 3 else logits)
    return np.concatenate(out)


def per_word(logits: np.ndarray, processor, batch: list[list[str]], max_length: int) -> np.ndarray:
    """Token logits [rows, tokens, classes] -> [all words of the batch, classes]: each word's first sub-token's
    logits, in row and word order; zeros for a word cut by `max_length`."""
    _, word_ids = split_words(processor, batch, max_length)
    out = np.zeros((sum(len(words) for words in batch), logits.shape[2]), dtype=logits.dtype)
    start = 0
    for row, (ids, words) in enumerate(zip(word_ids, batch, strict=True)):
        offset = logits.shape[1] - len(ids) if processor.padding_side == "left" else 0
        seen = set()
        for position, word in enumerate(ids):
            if word is not None and word not in seen:
                seen.add(word)
                out[start + word] = logits[row, offset + position]
        start += len(words)
    return out


def problem_type_of(model) -> tuple[str, float]:
    """(problem type, decision threshold) of a loaded student (a token classifier by its class, else transformers'
    `config.problem_type`)."""
    threshold = float(getattr(model.config, "decision_threshold", 0.5) or 0.5)
    return model_problem_type(model), threshold


def scores(logits: np.ndarray, labels: np.ndarray, names: list[str], problem_type: str = SINGLE,
           threshold: float = 0.5) -> dict:
    """The student's scores in its task's metrics, with "metric" naming the headline one: single-label accuracy,
    macro-F1 and per-class recall (the accuracy on each class's examples); multi-label micro- and macro-F1 and
    subset accuracy (sigmoid decided at `threshold`); regression MSE, MAE, Pearson and Spearman (metrics.py); token
    classification entity F1, precision and recall (seqeval, as in training) and the words' accuracy (`per_word`
    logits [all words, classes] against the per-row word labels)."""
    from sklearn.metrics import f1_score

    from .metrics import multi_label_metrics, regression_metrics, token_metrics

    if problem_type == REGRESSION:
        return {"metric": "mse", **regression_metrics(logits, labels)}  # several targets: over all of them
    if problem_type == MULTI:
        return {"metric": "micro_f1", **multi_label_metrics(1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64))),
                                                            np.asarray(labels), threshold)}
    if problem_type == TOKEN:  # the flattened words back into their sentences, padded with -100 as in training
        lengths = [len(row) for row in labels]
        references = np.full((len(labels), max(lengths, default=0)), -100)
        predictions = np.full_like(references, -100)
        for row, (words, start) in enumerate(zip(labels, np.cumsum([0, *lengths[:-1]]), strict=True)):
            references[row, :len(words)] = words
            predictions[row, :len(words)] = logits[start:start + len(words)].argmax(-1)
        return {"metric": "f1", **token_metrics(predictions, references, names)}
    predictions, labels = logits.argmax(-1), np.asarray(labels)
    recall = {name: float((predictions[labels == i] == i).mean()) if (labels == i).any() else None
              for i, name in enumerate(names)}
    return {"metric": "accuracy", "accuracy": float((predictions == labels).mean()),
            "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),  # as in training
            "per_class_recall": recall}


def decisions(logits: np.ndarray, problem_type: str = SINGLE, threshold: float = 0.5) -> np.ndarray:
    """What the student decides per row: the class id [rows], the label set [rows, classes] bool (sigmoid at
    `threshold`), or the predicted number [rows] (numbers [rows, targets] with several)."""
    logits = np.asarray(logits)
    if problem_type == REGRESSION:
        return logits[:, 0] if logits.ndim == 2 and logits.shape[1] == 1 else logits
    if problem_type == MULTI:
        return logits >= np.log(threshold / (1 - threshold))  # sigmoid(x) >= t, without overflow
    return logits.argmax(-1)


def agreement(logits: np.ndarray, reference: np.ndarray, problem_type: str = SINGLE, threshold: float = 0.5):
    """The share of rows where two students decide the same (the same class, the same label set); for regression,
    None (numbers agree by degree: see the largest output difference)."""
    if problem_type == REGRESSION:
        return None
    same = decisions(logits, problem_type, threshold) == decisions(reference, problem_type, threshold)
    return float((same.all(axis=1) if same.ndim == 2 else same).mean())


def class_names(model, n: int) -> list[str]:
    id2label = getattr(model.config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(n)]
