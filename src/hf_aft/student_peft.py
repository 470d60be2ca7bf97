"""The student as a PEFT model (LoRA, ...): wrapped so that its classification head trains and is saved with the
adapter, and the adapter's settings as the model card gives them."""

from __future__ import annotations

import copy
import os

from .errors import AFTError, first_line
from .student import find_feature_module


def wrap_peft(model, peft_config):
    """`get_peft_model` (TRL's pattern), making sure the classification head trains and is saved with the adapter:
    a sequence classifier gets task_type SEQ_CLS (peft then puts its head in `modules_to_save`), any other student
    gets its head's final linear layer added to `modules_to_save`."""
    from peft import PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise AFTError("the student is already a PeftModel and a peft_config was given too: pass the plain model "
                       "with peft_config, or the PeftModel without it.")
    peft_config = copy.deepcopy(peft_config)  # the caller's config is theirs: peft and we fill fields in
    if str(peft_config.task_type) in ("SEQ_CLS", "TaskType.SEQ_CLS") and type(model).__name__.endswith(
            "ForTokenClassification"):  # hf-aft train's --use_peft names SEQ_CLS; a token classifier is TOKEN_CLS
        peft_config.task_type = "TOKEN_CLS"
    elif peft_config.task_type is None and type(model).__name__.endswith("ForSequenceClassification"):
        peft_config.task_type = "SEQ_CLS"
    elif peft_config.task_type is None and not getattr(peft_config, "modules_to_save", None):
        peft_config.modules_to_save = [find_feature_module(model)[0]]
    try:
        wrapped = get_peft_model(model, peft_config)
    except (ValueError, TypeError, KeyError) as error:  # targets it cannot find or wrap, a model type it lacks
        said = first_line(error).rstrip(".")
        raise AFTError(f"peft cannot apply {type(peft_config).__name__} to the student ({type(model).__name__}): "
                       f"{said}. Name modules the student has with --lora_target_modules "
                       "(LoraConfig(target_modules=...)), e.g. its attention's query and value layers.") from error
    for config in wrapped.peft_config.values():  # a relative base path loads only from the directory trained in
        if config.base_model_name_or_path and os.path.exists(config.base_model_name_or_path):
            config.base_model_name_or_path = os.path.abspath(config.base_model_name_or_path)
    return wrapped


def peft_settings(model) -> dict | None:
    """The active adapter's settings for the model card, or None for a plain student."""
    config = getattr(model, "peft_config", None)
    if not isinstance(config, dict) or not config:
        return None
    config = config.get(getattr(model, "active_adapter", "default")) or next(iter(config.values()))
    targets = getattr(config, "target_modules", None) or []
    return {"peft_type": str(getattr(config.peft_type, "value", config.peft_type)), "r": getattr(config, "r", None),
            "lora_alpha": getattr(config, "lora_alpha", None),
            "base_model_name_or_path": config.base_model_name_or_path,
            "target_modules": sorted(targets) if not isinstance(targets, str) else [targets],
            "label_kwargs": _label_kwargs(model)}


def _label_kwargs(model) -> str:
    """`, id2label=..., label2id=...` for the card's loading line when the classes have names: the adapter's files do
    not hold them (peft loads the base checkpoint's config), so without these the loaded student says LABEL_0."""
    id2label = {int(i): name for i, name in (getattr(model.config, "id2label", None) or {}).items()}
    if not id2label or all(name == f"LABEL_{i}" for i, name in id2label.items()):
        return ""
    return f", id2label={id2label!r}, label2id={ {name: i for i, name in id2label.items()}!r}"
