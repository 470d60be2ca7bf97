"""Transfer losses: the paper's adaptive kernel loss (AFT) and the baselines it is compared with (KD, RKD).

Every loss is an `nn.Module` called as `loss(student_features [B, d_s], teacher_features [B, d_t])` and returns a
scalar. Its own parameters (AFT's scale logits, KD's projection) are trained with the student, in their own
optimizer group.
"""

from __future__ import annotations

import math
import operator
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AFTError

Transfer = Literal["aft", "kd", "rkd", "none"]
TRANSFERS = get_args(Transfer)
Kernel = Literal["linear", "rbf"]
KERNELS = get_args(Kernel)
_EPS = 1e-8


_HUGE = 2.0**40  # beyond this, squares summed over wide rows may overflow float32 (and differences, near its max)


def _shrink_huge(features: torch.Tensor) -> torch.Tensor:
    """Features whose largest magnitude exceeds 2**40, divided by a power of two that brings it below 1: exact in
    floating point, and the scale-free losses (AFT up to its 1e-8, RKD) keep their value, where squaring them would
    overflow. Any other input is multiplied by exactly 1.0: bit-identical. No device sync (`torch.where`)."""
    peak = features.detach().abs().amax()
    _, exponent = torch.frexp(peak)
    one = torch.ones_like(peak)
    return features * torch.where(peak > _HUGE, torch.ldexp(one, -exponent), one)


def _center_rownorm(features: torch.Tensor) -> torch.Tensor:
    """Subtract the batch mean per dimension, then divide each row by (its L2 norm + 1e-8)."""
    features = _shrink_huge(features)
    centered = features - features.mean(dim=0, keepdim=True)
    return centered / (centered.norm(dim=1, keepdim=True) + _EPS)


def _kernel(rows: torch.Tensor, kernel: str) -> torch.Tensor:
    gram = rows @ rows.T
    if kernel == "linear":
        return gram
    # ||zi - zj||^2 = |zi|^2 + |zj|^2 - 2 zi.zj, computed from the Gram matrix to stay O(B^2 d).
    sq_norms = gram.diagonal()
    sq_dists = (sq_norms[:, None] + sq_norms[None, :] - 2 * gram).clamp_min(0)
    return torch.exp(-sq_dists)


def _check_batch(student_features: torch.Tensor, teacher_features: torch.Tensor, name: str) -> None:
    if not isinstance(student_features, torch.Tensor) or not isinstance(teacher_features, torch.Tensor):
        raise AFTError(f"{name} takes torch tensors [batch, dim]; got {type(student_features).__name__} and "
                       f"{type(teacher_features).__name__}: pass torch.as_tensor(...).")
    if student_features.dim() != 2 or teacher_features.dim() != 2:
        raise AFTError(f"{name} expects 2-D features [batch, dim]; got {tuple(student_features.shape)} and "
                       f"{tuple(teacher_features.shape)}.")
    if student_features.shape[0] != teacher_features.shape[0]:
        raise AFTError(f"{name}: student batch {student_features.shape[0]} != teacher batch "
                       f"{teacher_features.shape[0]}.")
    if student_features.shape[0] == 0 or 0 in (student_features.shape[1], teacher_features.shape[1]):
        raise AFTError(f"{name}: the batch is empty (shapes {tuple(student_features.shape)} and "
                       f"{tuple(teacher_features.shape)}): give at least one row of at least one feature.")


def _whole(value) -> int | None:
    """`value` as an int when it is a whole number (an int, numpy int, or a float such as 768.0), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return int(value) if isinstance(value, float) and value.is_integer() else None


def _widths(teacher_dims, name: str) -> list[int]:
    """`teacher_dims` as a list of positive ints (one width per teacher), or one line saying what was wrong."""
    iterable = hasattr(teacher_dims, "__iter__") and not isinstance(teacher_dims, (str, bytes))
    widths = [_whole(d) for d in teacher_dims] if iterable else None
    if not widths or None in widths or min(widths) < 1:
        raise AFTError(f"{name}: teacher_dims must list one positive whole width per teacher, e.g. [768]; got "
                       f"{teacher_dims!r}.")
    return widths


class AdaptiveKernelLoss(nn.Module):
    """The AFT regularizer R of Qiu et al. (ICML 2024), exactly as written in the paper.

    R = sqrt(mean_ij (Ks_ij - Kt_ij)^2 + 1e-8), with Ks built from the centred, row-normalised student features and
    Kt from the centred, row-normalised teacher features scaled per dimension by sigmoid(s). `s` (one logit per
    teacher feature dimension, starting at 0, so every scale starts at 0.5) is this module's only parameter.

    Args:
        teacher_dims: width of each teacher's features, in the order they are concatenated.
        kernel: "linear" (Zn Zn^T, the paper's default) or "rbf" (exp(-||zi - zj||^2) on the same rows).
        learn_scales: if False, the scales stay at 0.5 (the logits are frozen).

    Called as `loss(student_features [B, d_s], teacher_features [B, sum(teacher_dims)])`: a scalar in [0, 2]. It
    compares the B rows with each other, so it teaches nothing below B = 3 (two centred rows are u and -u whatever
    the input; `AFTConfig` refuses such batches).

    Raises:
        AFTError: an unknown kernel, teacher_dims that are not positive whole widths, inputs that are not 2-D
            tensors, batches of different or no rows, a teacher width other than sum(teacher_dims).
    """

    transfer = "aft"  # its --transfer name

    def __init__(self, teacher_dims: list[int] | tuple[int, ...], kernel: str = "linear", learn_scales: bool = True):
        super().__init__()
        if kernel not in KERNELS:
            raise AFTError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}.")
        self.teacher_dims = teacher_dims = _widths(teacher_dims, "AdaptiveKernelLoss")
        if not isinstance(learn_scales, bool):
            raise AFTError(f"AdaptiveKernelLoss: learn_scales must be True or False; got {learn_scales!r}.")
        self.kernel = kernel
        self.scale_logits = nn.Parameter(torch.zeros(sum(teacher_dims)), requires_grad=learn_scales)

    @property
    def scales(self) -> torch.Tensor:
        return torch.sigmoid(self.scale_logits)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        _check_batch(student_features, teacher_features, "AdaptiveKernelLoss")
        if teacher_features.shape[1] != self.scale_logits.numel():
            raise AFTError(f"teacher features have width {teacher_features.shape[1]} but the loss was built for "
                           f"teacher_dims={self.teacher_dims} (sum {self.scale_logits.numel()}).")
        # The kernel is a small B x B computation: do it in at least float32 even under bf16/fp16 autocast.
        dtype = torch.promote_types(student_features.dtype, torch.float32)
        student = _center_rownorm(student_features.to(dtype))
        teacher = _center_rownorm(teacher_features.to(dtype) * self.scales.to(dtype))
        diff = _kernel(student, self.kernel) - _kernel(teacher, self.kernel)
        return torch.sqrt(diff.pow(2).mean() + _EPS)

    def scale_summary(self, names: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Per teacher: mean learned scale and the fraction of its dimensions scaled above 0.5."""
        names = names or [f"teacher_{i}" for i in range(len(self.teacher_dims))]
        if len(names) != len(self.teacher_dims):
            raise AFTError(f"scale_summary: {len(names)} names for {len(self.teacher_dims)} teachers; give one "
                           "name per teacher, in teacher_dims' order.")
        summary = {}
        for name, chunk in zip(names, self.scales.detach().float().split(self.teacher_dims), strict=True):
            summary[name] = {"mean": chunk.mean().item(), "frac_above_half": (chunk > 0.5).float().mean().item()}
        return summary


class KDLoss(nn.Module):
    """The paper's KD baseline (Qiu et al., ICML 2024, section 5; feature distillation as in FitNets, Romero et al.,
    ICLR 2015): a learned linear map from the student's features to the concatenated teachers' features, trained
    with the mean squared error.

    Args:
        student_dim: width d_s of the student's features.
        teacher_dims: width of each teacher's features, in the order they are concatenated.

    Called as `loss(student_features [B, d_s], teacher_features [B, sum(teacher_dims)])`: a scalar >= 0, in the
    features' units squared.

    Raises:
        AFTError: widths that are not positive whole numbers; inputs that are not 2-D tensors, batches of different
            or no rows, or features of other widths than the loss was built for.
    """

    transfer = "kd"  # its --transfer name

    def __init__(self, student_dim: int, teacher_dims: list[int] | tuple[int, ...]):
        super().__init__()
        if (_whole(student_dim) or 0) < 1:
            raise AFTError(f"KDLoss: student_dim must be a positive whole width; got {student_dim!r}.")
        student_dim = _whole(student_dim)
        self.teacher_dims = _widths(teacher_dims, "KDLoss")
        self.projection = nn.Linear(student_dim, sum(self.teacher_dims))

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        _check_batch(student_features, teacher_features, "KDLoss")
        widths = (self.projection.in_features, self.projection.out_features)
        if (student_features.shape[1], teacher_features.shape[1]) != widths:
            raise AFTError(f"KDLoss was built for student width {widths[0]} and teacher width {widths[1]} "
                           f"(teacher_dims={self.teacher_dims}); got {student_features.shape[1]} and "
                           f"{teacher_features.shape[1]}.")
        dtype = self.projection.weight.dtype
        return F.mse_loss(self.projection(student_features.to(dtype)), teacher_features.to(dtype))


class RKDLoss(nn.Module):
    """Relational KD (Park et al., CVPR 2019): match pairwise distances (normalised by their mean) and the angles
    of triplets between student and teacher features, with a smooth-L1 penalty. Weights as in the RKD paper's
    code (distance 1, angle 2); no parameters of its own, and widths need not match.

    Called as `loss(student_features [B, d_s], teacher_features [B, d_t])`: a scalar >= 0. Like AFT's it compares
    rows with each other and teaches nothing below B = 3.

    Raises:
        AFTError: a negative or non-finite weight; inputs that are not 2-D tensors, batches of different or no rows.
    """

    transfer = "rkd"  # its --transfer name

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0):
        super().__init__()
        for name, weight in (("distance_weight", distance_weight), ("angle_weight", angle_weight)):
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise AFTError(f"RKDLoss: {name} must be a finite number >= 0; got {weight!r}.")
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    @staticmethod
    def _distances(x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        mean = d[d > 0].mean() if (d > 0).any() else d.new_tensor(1.0)
        return d / mean

    @staticmethod
    def _angles(x: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)  # [i, j] = unit vector from x_i to x_j
        return torch.bmm(unit, unit.transpose(1, 2)).flatten()  # cosine of angle j-i-k for every triplet

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        _check_batch(student_features, teacher_features, "RKDLoss")
        student = _shrink_huge(student_features.float())
        teacher = _shrink_huge(teacher_features.float())
        loss = self.distance_weight * F.smooth_l1_loss(self._distances(student), self._distances(teacher))
        return loss + self.angle_weight * F.smooth_l1_loss(self._angles(student), self._angles(teacher))


def distillation_loss(student_logits: torch.Tensor, target_log_probs: torch.Tensor, temperature: float = 1.0,
                      problem_type: str = "single_label_classification") -> torch.Tensor:
    """The distillation term, averaged over the rows that have a target (Hinton, Vinyals and Dean, 2015,
    "Distilling the Knowledge in a Neural Network"; T^2 keeps the gradients' size independent of T):

    - single-label: T^2 * KL(softmax(target / T) || softmax(student / T));
    - multi-label: T^2 * KL(Bernoulli(sigmoid(target / T)) || Bernoulli(sigmoid(student / T))), the mean over the
      classes (as transformers' BCE task loss is), targets being the teacher's log-odds per class;
    - regression: the squared error between the student's outputs and the targets (standardised units), the mean
      over the targets; the temperature does not apply (numbers, not probabilities).

    Args:
        student_logits: [B, C] the student's logits (C classes or regression targets).
        target_log_probs: [B, C] the target's log-probabilities (or logits: softmax(x / T) is the same up to a
            per-row constant), log-odds (multi-label) or numbers (regression); rows holding NaN have no target and
            are left out of the mean.
        temperature: T > 0.
        problem_type: transformers' name of the student's task.
    Returns:
        A scalar, in nats (squared standardised units for regression).
    """
    if student_logits.shape != target_log_probs.shape:
        raise AFTError(f"distillation: student logits {tuple(student_logits.shape)} and targets "
                       f"{tuple(target_log_probs.shape)} differ in shape.")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    has_target = torch.isfinite(target_log_probs).all(dim=1)  # a NaN row: no honest target (distillation.fit_probe)
    target, student = target_log_probs[has_target].to(dtype), student_logits[has_target].to(dtype)
    rows = has_target.sum().clamp_min(1)
    if problem_type == "regression":
        return F.mse_loss(student, target, reduction="none").mean(dim=1).sum() / rows
    if problem_type == "multi_label_classification":
        target, student = target / temperature, student / temperature
        kl = _bernoulli_kl(target, student).mean(dim=1).sum()
    else:
        target = F.log_softmax(target / temperature, dim=1)
        kl = F.kl_div(F.log_softmax(student / temperature, dim=1), target, reduction="sum", log_target=True)
    return temperature**2 * kl / rows


def _bernoulli_kl(target_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))) elementwise, from log-odds (stable: logsigmoid)."""
    p = torch.sigmoid(target_logits)
    log_p, log_not_p = F.logsigmoid(target_logits), F.logsigmoid(-target_logits)
    log_q, log_not_q = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    return p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)


def build_transfer_loss(
    transfer: str, teacher_dims: list[int], student_dim: int, kernel: str = "linear", learn_scales: bool = True
) -> nn.Module | None:
    """The loss module for `transfer` ("aft", "kd", "rkd"), or None for "none" (plain fine-tuning)."""
    if transfer == "aft":
        return AdaptiveKernelLoss(teacher_dims, kernel=kernel, learn_scales=learn_scales)
    if transfer == "kd":
        return KDLoss(student_dim, teacher_dims)
    if transfer == "rkd":
        return RKDLoss()
    if transfer == "none":
        return None
    raise AFTError(f"unknown transfer {transfer!r}: choose one of {', '.join(TRANSFERS)}.")


def check_finite_loss(terms: dict[str, torch.Tensor], step: int, learning_rate: float, beta: float,
                      reduce=None, distill: tuple[float, float] | None = None) -> None:
    """Stop training, in one line naming the step, the term and the options that scale it (`distill`: the
    distillation's temperature and weight), when a loss term is NaN or inf: every update from then on would be NaN,
    and the run would end by saving a broken student. One device sync per step (as Trainer's own NaN filter of the
    logged loss); `reduce` (e.g. a gather's min) makes every process stop together."""
    finite = torch.stack([torch.isfinite(value.detach()).all() for value in terms.values()]).all().float()
    if reduce is not None:
        finite = reduce(finite)
    if bool(finite):
        return
    bad = [f"the {name.replace('_', ' ')} is {value.detach().float().flatten()[0].item()}"
           for name, value in terms.items() if not torch.isfinite(value.detach()).all()]
    bad = bad or ["another process's loss is not finite"]
    raise AFTError(f"training stopped at step {step}: {' and '.join(bad)}, so nothing was saved as the final student. "
                   f"Try a lower {scaling_options(terms, learning_rate, beta, distill)}, and check the inputs for "
                   "extreme values.")


def scaling_options(terms, learning_rate: float, beta: float, distill: tuple[float, float] | None = None) -> str:
    """'--learning_rate (now 5e-05) or --beta (now 0.1)': the options that scale the loss `terms` and its gradients."""
    named = [f"--learning_rate (now {learning_rate:g})"]
    named += [f"--beta (now {beta:g})"] if "transfer_loss" in terms else []
    if "distill_loss" in terms and distill is not None:
        named += [f"--distill_temperature (now {distill[0]:g})", f"--distill_weight (now {distill[1]:g})"]
    return ", ".join(named[:-1]) + f" or {named[-1]}" if len(named) > 1 else named[0]


class GradNormGuard:
    """A `Trainer` mixin. `_all_finite`: a finiteness flag gathered from every process (check_finite_loss's `reduce`).
    `_get_grad_norm`: stop training, in one line, when the gradient norm is not finite though every loss term is
    (a --beta or --distill_weight so large that the gradients overflow float32): clipping then scales them to zero
    or NaN and every later step leaves the student as it is, a run that would end saving an untrained student. Not
    under fp16 mixed precision, whose loss scaler skips such steps on purpose. Reads the norm Trainer computes
    (`_get_grad_norm`, transformers 5); one device sync per step."""

    def _all_finite(self, finite: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(finite.reshape(1)).min()

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        scaled = self.accelerator.scaler is not None
        if grad_norm is None or scaled or bool(torch.isfinite(torch.as_tensor(grad_norm))):
            return grad_norm
        terms = ["task_loss", *["transfer_loss"] * (self.transfer_loss is not None),
                 *["distill_loss"] * (self.rows.distill != "none")]
        options = scaling_options(terms, self.args.learning_rate, self.args.beta,
                                  (self.args.distill_temperature, self.args.distill_weight))
        raise AFTError(f"training stopped at step {self.state.global_step + 1}: the gradient norm is "
                       f"{float(grad_norm)} (the loss is finite but its gradients overflow), so nothing was saved as "
                       f"the final student. Try a lower {options}.")
