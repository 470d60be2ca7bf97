"""The student: loading it with a head sized and named from the labels, wrapping it with PEFT, preparing its inputs
beside the teacher features, and capturing its features z(x) during training.

Student features are the input of the classification head, captured by a forward pre-hook. By default the hooked
module is the head's final linear layer: the last `nn.Linear` whose `out_features` equals `config.num_labels` (BERT's
`classifier`, RoBERTa's `classifier.out_proj`, DistilBERT's `classifier`, ViT's `classifier`, ...). Its input is what
the head turns into logits, i.e. the paper's penultimate features (after the head's own dropout, as the head sees
them). Point elsewhere with `student_feature_module="name.in.named_modules"`. Inputs with more than two dimensions are
reduced to one vector per example: [B, T, H] -> first token (the CLS convention of text heads), [B, C, H, W] -> mean
over the spatial positions.

PEFT students: peft wraps a trained head in a `ModulesToSaveWrapper` that holds the frozen original and one trainable
copy per adapter, and runs whichever is active. The hook goes on every copy of the chosen module, so the features
always come from the copy that actually ran (the adapted one while training).
"""

from __future__ import annotations

import logging
import os
import re

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from .class_sets import align_eval_sets, class_label_names
from .data import Labels, arrow_column, check_texts
from .errors import AFTError, one_line
from .features import map_beside_features
from .hub_reach import hub_answer, note_cached, offline_if_unreachable
from .student_head import HEAD_PARTS, check_fold_scale, head_labels, keep_head_rows, named_classes
from .student_source import check_student_path
from .targets import REGRESSION, TOKEN
from .teachers.loading import cap_max_length, intended_load_report, teach_token_limit, teacher_modality, token_limit
from .tokens import check_room, check_vocabulary, encode
from .words import check_fast_tokenizer, is_words_dataset, student_word_batch, word_label_column

logger = logging.getLogger(__name__)

_ADAPTER = re.compile(r"\.lora_[^.]+\.")


def find_feature_module(model: nn.Module, module_name: str | None = None) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    if module_name and module_name not in modules and "base_model.model." + module_name in modules:
        module_name = "base_model.model." + module_name  # a name in the student, given for its PeftModel
    if module_name:
        if module_name not in modules:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)][-5:]
            raise AFTError(f"student_feature_module {module_name!r} is not a module of the student; its last linear "
                           f"layers are {linears}.")
        return module_name, modules[module_name]
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    candidates = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear) and m.out_features == num_labels
                  and not _ADAPTER.search(n)]  # a LoRA on the head has its own small num_labels-wide layer
    if not candidates:
        raise AFTError(f"could not find the student's classification head (an nn.Linear with {num_labels} outputs): "
                       "pass student_feature_module=... (--student_feature_module).")
    return candidates[-1]


def feature_dim(module: nn.Module) -> int | None:
    return getattr(module, "in_features", None)


_COPY = re.compile(r"\.(original_module|modules_to_save\.[^.]+)(?=\.|$)")


def copies_of(model: nn.Module, name: str) -> list[nn.Module]:
    """The module called `name` and its twins inside a peft `ModulesToSaveWrapper` (original and per-adapter
    copies); a plain model gives just the module."""
    canonical = _COPY.sub("", name)
    found = [m for n, m in model.named_modules() if n != name and _COPY.search(n) and _COPY.sub("", n) == canonical]
    return [dict(model.named_modules())[name], *found]


def fold_target_scale(model, mean, std) -> None:
    """Scale the head's final linear layer (and its peft copies) so that it outputs std * y + mean (floats, or one
    per output for several targets): a regression student trained on standardised targets then predicts in the
    data's units, with no hf-aft code to read it. The scale is also kept in its config (`target_mean`,
    `target_std`) for the card.

    Raises:
        AFTError: a NaN or infinite `mean` or `std`, a `std` <= 0, or not one value or one per output of the head.
    """
    name, head = find_feature_module(model)
    check_fold_scale(mean, std, head.out_features)
    model.config.target_mean, model.config.target_std = mean, std
    with torch.no_grad():
        for linear in copies_of(model, name):
            scale = torch.as_tensor(std, dtype=linear.weight.dtype, device=linear.weight.device).reshape(-1)
            linear.weight.mul_(scale[:, None])
            if linear.bias is not None:
                linear.bias.mul_(scale).add_(torch.as_tensor(mean, dtype=linear.bias.dtype,
                                                             device=linear.bias.device).reshape(-1))


class StudentFeatureCapture:
    """Keeps the last input of one module of the student; `pop()` returns it once as [B, d].

    `point="head_input"` (the paper's and its code's point) keeps the module's input as is. `point="pre_dropout"`:
    when that input is the output of an `nn.Dropout` (BERT-like heads run `classifier(dropout(pooled))`, RoBERTa's
    `out_proj(dropout(...))`), it keeps the dropout's input instead, the same features without the dropout noise; a
    head with no dropout right before it (ViT) gets its plain input, as with `head_input`. Found by a forward hook on
    every `nn.Dropout` that remembers the last one run: its output must be the very tensor the head receives."""

    def __init__(self, model: nn.Module, module_name: str | None = None, point: str = "head_input"):
        self.name, self.module = find_feature_module(model, module_name)
        self.features: torch.Tensor | None = None
        self._last_dropout: tuple | None = None  # (input, output) of the last nn.Dropout run
        self._handles = [m.register_forward_pre_hook(self._store) for m in copies_of(model, self.name)]
        if point == "pre_dropout":
            self._handles += [m.register_forward_hook(self._store_dropout) for m in model.modules()
                              if isinstance(m, nn.Dropout)]

    def _store_dropout(self, module, args, output):
        self._last_dropout = (args[0], output) if args else None

    def _store(self, module, args, kwargs=None):
        features = args[0] if args else next(iter(kwargs.values()))
        last, self._last_dropout = self._last_dropout, None
        self.features = last[0] if last is not None and last[1] is features else features

    def pop(self, keep_tokens: bool = False) -> torch.Tensor:
        """[B, d]; with `keep_tokens` (token classification) a text head's input as it is, [B, T, d]."""
        features, self.features = self.features, None
        if features is None:
            raise AFTError(f"the student's forward never reached {self.name!r}: set student_feature_module.")
        if features.dim() == 3 and not keep_tokens:
            return features[:, 0]
        if features.dim() > 3:
            return features.flatten(2).mean(-1)
        return features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


# ---- loading ----
def check_student_source(name: str, image_column: str | None = None, python: bool = False) -> None:
    """Refuse, before any teacher runs, a student that cannot be found (a mistyped folder) or cannot read the data:
    its config is read (a local file, or one request to the Hub). `python`: name `image_column=`, not the flag.

    Raises:
        AFTError: no such folder, or no config there or on the Hub; an image model without `image_column` (text
            data), a known text model with one.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as TEXT_MODELS

    name = os.fspath(name)
    check_student_path(name, "model_name_or_path=" if python else "--model_name_or_path")
    offline_if_unreachable(name)
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as error:
        raise AFTError(f"could not load the student {name!r}: {student_load_failure(name, error)}") from error
    if not os.path.exists(name):
        note_cached(f"student {name}")
    flag = "image_column=" if python else "--image_column "
    if image_column is None and teacher_modality(config) == "image":  # else a tokenizer error after the teachers ran
        raise AFTError(f"the student {name!r} is an image model ({config.model_type}): it cannot read text; pass "
                       f"{flag.strip()} naming the images, or choose a text student.")
    if image_column is not None and teacher_modality(config) == "text" and config.model_type in TEXT_MODELS:
        raise AFTError(f"the student {name!r} is a text model ({config.model_type}): {flag}{image_column!r} needs "
                       "an image student (ViT, ResNet, MobileNet...), or leave it out for text.")


def student_load_failure(name: str, error: BaseException) -> str:
    """Why model `name` did not load, in one line: the error, and when `name` is no local path what the Hub said."""
    if os.path.exists(name):
        return one_line(error)
    return f"not a local folder (check the path), and from the Hub: {hub_answer(one_line(error))}"


def load_student(name: str, labels=None, image_column: str | None = None):
    """(model, tokenizer or image processor): an `AutoModelFor{Sequence,Image}Classification` whose head is sized and
    named from `labels` (`hf_aft.data.Labels` or the other targets of `load_labelled_splits`, or a list of class
    names in id order for a single-label head; a new head when the checkpoint's does not fit). An image model needs
    `image_column`. A decoder tokenizer without a pad token pads with its eos token, and the model's config learns
    that pad id.

    Raises:
        AFTError: `labels` of another type; a model that does not load, or is an image model without
            `image_column` (a text model with one).
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    name = os.fspath(name)
    check_student_path(name)
    offline_if_unreachable(name)
    labels = head_labels(labels)
    problem_type = getattr(labels, "problem_type", "single_label_classification")
    auto_model, auto_processor = ((AutoModelForImageClassification, AutoImageProcessor) if image_column else
                                  (AutoModelForTokenClassification if problem_type == TOKEN else
                                   AutoModelForSequenceClassification, AutoTokenizer))
    head = ({"id2label": labels.id2label, "label2id": labels.label2id,  # num_labels follows (passing it beside a
             "ignore_mismatched_sizes": True} if labels is not None else {})  # checkpoint's other count warns)
    if labels is not None and problem_type != TOKEN:  # transformers' config knows the sequence types only
        head["problem_type"] = problem_type
    try:
        processor = auto_processor.from_pretrained(name)
        with intended_load_report():  # a new head sized from the labels is the point, not news
            model, info = auto_model.from_pretrained(name, output_loading_info=True, **head)
    except Exception as error:
        check_student_source(name, image_column, python=True)  # a model of the other modality, said as such
        kind = "image " if image_column else ""
        raise AFTError(f"could not load the {kind}student {name!r}: {student_load_failure(name, error)}") from error
    _warn_unexpected_new_weights(name, info)
    if not image_column:
        check_vocabulary(processor, model.config, f"the student {name!r}")
    if labels is not None and problem_type != REGRESSION:  # a trained head in another class order keeps its rows
        keep_head_rows(model, named_classes(AutoConfig.from_pretrained(name).id2label), list(labels.names))
    if getattr(labels, "threshold", None) is not None:
        model.config.decision_threshold = labels.threshold  # saved in config.json: where a class's sigmoid counts
    set_pad_token(model, processor)
    teach_token_limit(model, processor)  # the tokenizer then knows what the model can take (its position table)
    return model, processor


def _warn_unexpected_new_weights(name: str, info: dict) -> None:
    """The head is new by design; newly initialised weights anywhere else are worth one line."""
    new = [key for key in [*info.get("missing_keys", ()), *(k[0] if isinstance(k, tuple) else k
                                                             for k in info.get("mismatched_keys", ()))]
           if not any(part in key.split(".") for part in HEAD_PARTS)]
    if new:
        logger.warning("student %s: %d weights outside the classification head were not in the checkpoint and start "
                       "random (first: %s)", name, len(new), ", ".join(new[:3]))


def set_pad_token(model, tokenizer) -> None:
    """Sequence classifiers find each text's last token through `config.pad_token_id`; decoder tokenizers (GPT-2,
    LLaMA) often have none: pad with eos, as hf-aft does for decoder teachers."""
    if not hasattr(tokenizer, "pad_token"):  # an image processor
        return
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise AFTError("the student's tokenizer has no pad, eos or unk token to pad batches with: add one.")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def check_labels_fit(dataset, model) -> None:
    """Every integer label of the training data is a class of the student's head."""
    if dataset is None:
        return
    column = next((c for c in ("labels", "label") if c in dataset.column_names), None)
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if column is None or num_labels is None:
        return
    labels = arrow_column(dataset, column)
    per_token = pa.types.is_list(labels.type) or pa.types.is_large_list(labels.type)
    labels = np.asarray(pc.list_flatten(labels) if per_token else labels)
    labels = labels[labels != -100] if per_token and labels.dtype.kind in "iu" else labels  # sub-tokens, specials
    if labels.dtype.kind not in "iu":
        return  # regression or multi-label targets: nothing to range-check
    if labels.size and labels.min() < 0:
        raise AFTError(f"labels in {column!r} include {labels.min()} (hidden labels, as in GLUE test splits): drop "
                       "those rows before training.")
    if labels.size and labels.max() >= num_labels:
        raise AFTError(f"labels in {column!r} range over [{labels.min()}, {labels.max()}] but the student has "
                       f"num_labels={num_labels}: load it with num_labels={labels.max() + 1} or remap the labels.")


def name_labels(model, train_dataset, eval_dataset=None):
    """Python-API parity with `hf-aft train`: string labels are encoded to class ids (in the order of the sorted
    names, as the CLI does), and the student's config names its classes (`id2label` / `label2id`) as the data's when
    the labels have names (a `ClassLabel` or strings): a head trained for the same classes in another order has its
    rows reordered, one for other classes is said in one line (`student_head`). Returns the (train, eval) datasets,
    encoded when they held strings."""
    column = next((c for c in ("labels", "label") if train_dataset is not None and c in train_dataset.column_names),
                  None)
    if column is None or not hasattr(train_dataset, "features"):
        return train_dataset, eval_dataset
    feature = train_dataset.features[column]
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        labels = Labels.from_dataset(train_dataset, column)
        encode = labels.encode
        train_dataset = encode(train_dataset)
        eval_dataset = ({k: encode(v) for k, v in eval_dataset.items()} if isinstance(eval_dataset, dict)
                        else encode(eval_dataset) if eval_dataset is not None else None)
        names = labels.names
    else:  # a ClassLabel, or a list of them (a class per word)
        names = class_label_names(feature)
        eval_dataset = align_eval_sets(eval_dataset, column, names)
    name_classes(model, names)
    return train_dataset, eval_dataset


def name_classes(model, names: list[str]) -> None:
    config = getattr(model, "config", None)
    if not names or config is None:
        return
    if config.num_labels != len(names):
        raise AFTError(f"the labels have {len(names)} classes {names[:5]} but the student has num_labels="
                       f"{config.num_labels}: load it with num_labels={len(names)}.")
    saved = named_classes(config.id2label)
    if saved != names:  # placeholders, the same classes in another order (rows reordered), or other classes
        keep_head_rows(model, saved, names)
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}


# ---- inputs ----
def tokenize_beside_features(dataset, tokenizer, text_column: str = "text", max_length: int | None = None,
                             label_column: str | None = None):
    """Tokenize `text_column` for the student (truncating to `max_length`, default the tokenizer's limit), leaving
    the `teacher_features` column in place instead of copying it (see `hf_aft.features.map_beside_features`). A
    words column (lists of strings) is tokenized word by word, its per-word class ids (`label_column`, default
    `labels`) aligned to the word pieces as `labels` (`words.student_word_batch`).

    Raises:
        AFTError: no `text_column`, or a row without text (named); a words dataset whose per-word labels are in a
            column not named (`words.word_label_column`)."""
    if isinstance(dataset, datasets.Dataset):  # else a raw tokenizer error, no row named
        if text_column not in dataset.column_names:
            raise AFTError(f"the dataset has no {text_column!r} column (it has {dataset.column_names}): pass "
                           "text_column=... naming the student's text.")
        if not is_words_dataset(dataset, text_column):
            check_texts(dataset, text_column, "given")
    max_length = cap_max_length("the student", max_length, token_limit(None, tokenizer), "--max_length")
    check_room(tokenizer, max_length, "the student", "--max_length")

    def tokenize(batch):  # an empty text gets one token (tokens.py), as for the teachers
        return encode(tokenizer, batch[text_column], max_length)

    if is_words_dataset(dataset, text_column):  # token classification: labels aligned to the word pieces
        check_fast_tokenizer(tokenizer, "the student")
        tokenize = student_word_batch(tokenizer, text_column, max_length,
                                      word_label_column(dataset, text_column, label_column))
    return map_beside_features(dataset, tokenize, desc="Tokenizing")
