"""Student features z(x): the input of the classification head, captured by a forward pre-hook.

By default the hooked module is the head's final linear layer: the last `nn.Linear` whose `out_features` equals
`config.num_labels` (BERT's `classifier`, RoBERTa's `classifier.out_proj`, DistilBERT's `classifier`, ViT's
`classifier`, ...). Its input is what the head turns into logits, i.e. the paper's penultimate features (after the
head's own dropout, as the head sees them). Point elsewhere with `student_feature_module="name.in.named_modules"`.
Inputs with more than two dimensions are reduced to one vector per example: [B, T, H] -> first token (the CLS
convention of text heads), [B, C, H, W] -> mean over the spatial positions.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import AFTError


def find_feature_module(model: nn.Module, module_name: str | None = None) -> tuple[str, nn.Module]:
    modules = dict(model.named_modules())
    if module_name:
        if module_name not in modules:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)][-5:]
            raise AFTError(f"student_feature_module {module_name!r} is not a module of the student; its last linear "
                           f"layers are {linears}.")
        return module_name, modules[module_name]
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    candidates = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not candidates:
        raise AFTError(f"could not find the student's classification head (an nn.Linear with {num_labels} outputs): "
                       "pass student_feature_module=... (--student_feature_module).")
    return candidates[-1]


def feature_dim(module: nn.Module) -> int | None:
    return getattr(module, "in_features", None)


class StudentFeatureCapture:
    """Keeps the last input of one module of the student; `pop()` returns it once as [B, d]."""

    def __init__(self, model: nn.Module, module_name: str | None = None):
        self.name, self.module = find_feature_module(model, module_name)
        self.features: torch.Tensor | None = None
        self._handle = self.module.register_forward_pre_hook(self._store)

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
        self._handle.remove()
