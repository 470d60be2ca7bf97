"""Property tests (hypothesis) of the transfer losses: any finite features give a finite loss and finite gradients.

Covered for AFT (linear and rbf kernels), KD and RKD: batches of 2 and more, constant features, duplicated rows, rows
of very different size, magnitudes from 1e-30 to 1e15, float32 / float64 / float16 / bfloat16 inputs, and AFT scale
logits far from 0. Gradients are checked with respect to the student features and the loss's own parameters (AFT's
scale logits, KD's projection). The value of AFT for ordinary inputs is also checked against the paper's formula
(tests/test_losses.py), so that a robustness fix cannot change it.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_losses import paper_regularizer

from hf_aft import AdaptiveKernelLoss, KDLoss, RKDLoss

# Deterministic and quick: the same examples on every run, nothing written to a .hypothesis folder.
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MAX_MAGNITUDE = 1e15  # KD's MSE of 1e19-sized features no longer fits float32: that would be its value, not a bug
MAGNITUDES = (1e-30, 1e-20, 1e-8, 1e-3, 1.0, 1e3, 1e8, 1e15)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
HALF_MAX = 6e4  # float16 holds up to 65504


def _limit(dtype: torch.dtype) -> float:
    return HALF_MAX if dtype == torch.float16 else MAX_MAGNITUDE


@st.composite
def matrices(draw, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """A [rows, cols] matrix of one of several shapes of trouble, finite in `dtype`."""
    limit = _limit(dtype)
    kind = draw(st.sampled_from(["any", "scaled", "constant", "duplicated", "zero", "mixed_rows"]))
    if kind == "any":  # anything hypothesis likes within the limit: subnormals, +-0, the limit itself...
        bound = float(np.float32(limit * 0.999))  # exactly a float32
        values = draw(st.lists(st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32),
                               min_size=rows * cols, max_size=rows * cols))
        array = np.array(values, dtype=np.float64).reshape(rows, cols)
    else:
        magnitude = draw(st.sampled_from([m for m in MAGNITUDES if m <= limit]))
        base = np.array(draw(st.lists(st.integers(-3, 3), min_size=rows * cols, max_size=rows * cols)),
                        dtype=np.float64).reshape(rows, cols)
        if kind == "constant":
            base = np.repeat(base[:1], rows, axis=0)
        elif kind == "duplicated":
            picks = draw(st.lists(st.integers(0, rows - 1), min_size=rows, max_size=rows))
            base = base[picks]
        elif kind == "zero":
            base = np.zeros_like(base)
        elif kind == "mixed_rows":  # one row at this magnitude, the others at their own
            others = draw(st.lists(st.sampled_from([m for m in MAGNITUDES if m <= limit]), min_size=rows,
                                   max_size=rows))
            base = base * np.array(others)[:, None] / magnitude
        array = base * magnitude
    tensor = torch.tensor(array, dtype=torch.float64).to(dtype)
    assert torch.isfinite(tensor).all()
    return tensor


@st.composite
def batches(draw, same_width: bool = False):
    """(student [B, ds], teacher [B, sum(dims)], teacher dims, dtype name) with B >= 2."""
    dtype_name = draw(st.sampled_from(sorted(DTYPES)))
    dtype = DTYPES[dtype_name]
    batch = draw(st.integers(2, 6))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    student_width = sum(dims) if same_width else draw(st.integers(1, 5))
    student = draw(matrices(batch, student_width, dtype))
    teacher = draw(matrices(batch, sum(dims), dtype))
    return student, teacher, dims, dtype_name


def _value_and_grads(loss: torch.nn.Module, student: torch.Tensor, teacher: torch.Tensor):
    loss.zero_grad(set_to_none=True)
    student = student.clone().requires_grad_(True)
    value = loss(student, teacher)
    value.backward()
    return value, student.grad, {name: p.grad for name, p in loss.named_parameters() if p.requires_grad}


def assert_finite_everywhere(loss: torch.nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> None:
    value, student_grad, param_grads = _value_and_grads(loss, student, teacher)
    assert value.dim() == 0
    assert torch.isfinite(value), f"loss {value.item()}"
    assert value.item() >= 0
    for name, grad in param_grads.items():
        assert grad is not None and torch.isfinite(grad).all(), f"{name} grad {grad}"
    assert student_grad is not None
    if student.dtype == torch.float16 and not torch.isfinite(student_grad).all():
        # The losses compute in float32; only the gradient handed back to float16 features is float16, and float16
        # stops at 65504. Features of size ~1e-7 have gradients of size ~1e7 (R divides by each row's norm + 1e-8):
        # the same features in float32 must give a finite gradient, too large for float16 exactly where it is inf.
        _, exact, _ = _value_and_grads(loss, student.float(), teacher.float())
        assert torch.isfinite(exact).all(), f"student grad (float32) {exact}"
        overflowed = ~torch.isfinite(student_grad)
        assert (exact[overflowed].abs() > torch.finfo(torch.float16).max).all(), (student_grad, exact)
    else:
        assert torch.isfinite(student_grad).all(), f"student grad {student_grad}"


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@PROPERTY
@given(data=batches(), logits=st.lists(st.floats(-30, 30), min_size=1, max_size=1))
def test_aft_loss_and_gradients_are_finite(kernel, data, logits):
    student, teacher, dims, _ = data
    loss = AdaptiveKernelLoss(dims, kernel=kernel)
    with torch.no_grad():  # scales from almost 0 to almost 1, not only the initial 0.5
        loss.scale_logits.copy_(torch.linspace(-abs(logits[0]), logits[0], loss.scale_logits.numel()))
    if student.dtype == torch.float64:
        loss = loss.double()
    assert_finite_everywhere(loss, student, teacher)


@PROPERTY
@given(data=batches())
def test_kd_loss_and_gradients_are_finite(data):
    student, teacher, dims, _ = data
    torch.manual_seed(0)
    loss = KDLoss(student.shape[1], dims)
    if student.dtype == torch.float64:
        loss = loss.double()
    assert_finite_everywhere(loss, student, teacher)


@PROPERTY
@given(data=batches())
def test_rkd_loss_and_gradients_are_finite(data):
    student, teacher, _, _ = data
    assert_finite_everywhere(RKDLoss(), student, teacher)


@pytest.mark.parametrize("name", ["linear", "rbf", "kd", "rkd"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("case", ["constant_student", "constant_both", "duplicated_rows", "batch_of_two_equal",
                                  "huge", "tiny", "huge_and_tiny_rows"])
def test_named_edge_cases(name, dtype, case):
    """The cases the issue names, each spelled out once (hypothesis finds them too, but not by name)."""
    dtype = DTYPES[dtype]
    limit = _limit(dtype)
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    teacher = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    if case == "constant_student":
        student = torch.full_like(student, 7.0)
    elif case == "constant_both":
        student, teacher = torch.full_like(student, -2.0), torch.full_like(teacher, 3.0)
    elif case == "duplicated_rows":
        student, teacher = student[[0, 0, 1, 1, 2]], teacher[[0, 0, 1, 1, 2]]
    elif case == "batch_of_two_equal":
        student, teacher = student[[0, 0]], teacher[[1, 1]]
    elif case == "huge":
        student, teacher = student * limit / 10, teacher * limit / 10
    elif case == "tiny":
        tiny = 1e-30 if dtype in (torch.float32, torch.float64, torch.bfloat16) else 1e-7
        student, teacher = student * tiny, teacher * tiny
    elif case == "huge_and_tiny_rows":
        rows = torch.tensor([limit / 10, 1e-7, 1.0, limit / 10, 1e-7], dtype=torch.float64)[:, None]
        student, teacher = student * rows, teacher * rows
    student, teacher = student.to(dtype), teacher.to(dtype)
    if name in ("linear", "rbf"):
        loss = AdaptiveKernelLoss([3], kernel=name)
    elif name == "kd":
        torch.manual_seed(0)
        loss = KDLoss(4, [3])
    else:
        loss = RKDLoss()
    if dtype == torch.float64:
        loss = loss.double()
    assert_finite_everywhere(loss, student, teacher)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(2, 7), magnitude=st.sampled_from([1e-3, 1.0, 1e3]))
def test_aft_value_is_the_paper_formula_for_ordinary_inputs(kernel, seed, batch, magnitude):
    """Whatever makes AFT robust must leave its value on ordinary inputs exactly R of the paper (float64)."""
    rng = np.random.default_rng(seed)
    z, t, s = rng.normal(size=(batch, 5)) * magnitude, rng.normal(size=(batch, 6)) * magnitude, rng.normal(size=6)
    loss = AdaptiveKernelLoss([2, 4], kernel=kernel).double()
    with torch.no_grad():
        loss.scale_logits.copy_(torch.from_numpy(s))
    value = loss(torch.from_numpy(z), torch.from_numpy(t)).item()
    assert value == pytest.approx(paper_regularizer(z, t, s, kernel), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("magnitude", [1e20, 3e38])
@pytest.mark.parametrize("name", ["linear", "rbf", "rkd"])
def test_scale_free_losses_beyond_1e19(name, magnitude):
    """AFT (up to its 1e-8) and RKD do not depend on the features' overall scale, so any finite float32 features
    give the value of the same features at size 1: features beyond 2**40 are divided by a power of two first (their
    squares would overflow float32 near 1e19). KD's MSE itself exceeds float32."""
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 3, generator=generator)
    loss = AdaptiveKernelLoss([3], kernel=name) if name != "rkd" else RKDLoss()
    reference = loss(student, teacher).item()
    scale = magnitude / 4  # one factor: `student * magnitude / 4` would overflow to inf before the division
    big_student, big_teacher = student * scale, teacher * scale
    assert torch.isfinite(big_student).all() and torch.isfinite(big_teacher).all()
    assert_finite_everywhere(loss, big_student, big_teacher)
    assert loss(big_student, big_teacher).item() == pytest.approx(reference, rel=1e-4)
