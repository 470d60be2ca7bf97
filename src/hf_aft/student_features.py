"""Student features z(x): the input of the classification head, captured by a forward pre-hook.

By default the hooked module is the head's final linear layer: the last `nn.Linear` whose `out_features` equals
`config.num_labels` (BERT's `classifier`, RoBERTa's `classifier.out_proj`, DistilBERT's `classifier`, ViT's
`classifier`, ...). Its input is what the head turns into logits, i.e. the paper's penultimate features (after the
head's own dropout, as the head sees them). Point elsewhere with `student_feature_module="name.in.named_modules"`.
Inputs with more than two dimensions are reduced to one vector per example: [B, T, H] -> first token (the CLS
convention of text heads), [B, C, H, W] -> mean over the spatial positions.

PEFT students: peft wraps a trained head in a `ModulesToSaveWrapper` that holds the frozen original and one trainable
copy per adapter, and runs whichever is active. The hook goes on every copy of the chosen module, so the features
always come from the copy that actually ran (the adapted one while training).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .errors import AFTError

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


class StudentFeatureCapture:
    """Keeps the last input of one module of the student; `pop()` returns it once as [B, d]."""

    def __init__(self, model: nn.Module, module_name: str | None = None):
        self.name, self.module = find_feature_module(model, module_name)
        self.features: torch.Tensor | None = None
        self._handles = [m.register_forward_pre_hook(self._store) for m in copies_of(model, self.name)]

    def _store(self, module, args, kwargs=None):
        self.features = args[0] if args else next(iter(kwargs.values()))

    def pop(self) -> torch.Tensor:
        features, self.features = self.features, None
        if features is None:
            raise AFTError(f"the student's forward never reached {self.name!r}: set student_feature_module.")
        if features.dim() == 3:
            return features[:, 0]
        if features.dim() > 3:
            return features.flatten(2).mean(-1)
        return features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
