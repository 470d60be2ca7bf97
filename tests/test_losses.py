"""The transfer losses against the paper's formula, written independently here in numpy (float64)."""

import numpy as np
import pytest
import torch

from hf_aft import AdaptiveKernelLoss, AFTError, KDLoss, RKDLoss, build_transfer_loss


def paper_regularizer(z, t, s, kernel):
    """R = sqrt(mean_ij (Ks_ij - Kt_ij)^2 + 1e-8), design.md's formula, with explicit loops for the rbf kernel."""

    def prep(x):
        c = x - x.mean(axis=0)
        return c / (np.sqrt((c**2).sum(axis=1, keepdims=True)) + 1e-8)

    def gram(x):
        if kernel == "linear":
            return x @ x.T
        n = len(x)
        return np.array([[np.exp(-((x[i] - x[j]) ** 2).sum()) for j in range(n)] for i in range(n)])

    ks, kt = gram(prep(z)), gram(prep(t * (1 / (1 + np.exp(-s)))))
    return np.sqrt(((ks - kt) ** 2).mean() + 1e-8)


def numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_value_and_gradients_match_the_paper_formula_in_float64(kernel):
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 3 + 4))  # widths differ: only B x B kernels are compared
    s = rng.normal(size=7)
    loss = AdaptiveKernelLoss([3, 4], kernel=kernel).double()
    with torch.no_grad():
        loss.scale_logits.copy_(torch.from_numpy(s))
    zt = torch.tensor(z, requires_grad=True)
    value = loss(zt, torch.from_numpy(t))
    value.backward()

    expected = paper_regularizer(z, t, s, kernel)
    assert abs(value.item() - expected) / expected < 1e-6
    assert rel(zt.grad.numpy(), numeric_grad(lambda x: paper_regularizer(x, t, s, kernel), z)) < 1e-6
    assert rel(loss.scale_logits.grad.numpy(), numeric_grad(lambda x: paper_regularizer(z, t, x, kernel), s)) < 1e-6


def test_scales_start_at_one_half_and_are_the_only_parameter():
    loss = AdaptiveKernelLoss([3, 5])
    assert [name for name, _ in loss.named_parameters()] == ["scale_logits"]
    assert torch.equal(loss.scales, torch.full((8,), 0.5))
    summary = loss.scale_summary(["a", "b"])
    assert summary == {"a": {"mean": 0.5, "frac_above_half": 0.0}, "b": {"mean": 0.5, "frac_above_half": 0.0}}


def test_identical_features_give_the_floor_value():
    z = torch.randn(8, 4, dtype=torch.float64)
    assert AdaptiveKernelLoss([4]).double()(z, z).item() == pytest.approx(1e-4, rel=1e-6)  # sqrt(0 + 1e-8)


def test_learn_scales_false_freezes_the_scales():
    loss = AdaptiveKernelLoss([4], learn_scales=False)
    assert not loss.scale_logits.requires_grad
    loss(torch.randn(5, 3, requires_grad=True), torch.randn(5, 4)).backward()
    assert loss.scale_logits.grad is None


def test_the_kernel_is_computed_in_float32_under_half_precision_inputs():
    z, t = torch.randn(6, 4), torch.randn(6, 4)
    full = AdaptiveKernelLoss([4])(z, t)
    half = AdaptiveKernelLoss([4])(z.bfloat16(), t.bfloat16())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2)


def test_kd_maps_student_to_teacher_width_and_trains_its_projection():
    loss = KDLoss(student_dim=5, teacher_dims=[3, 4])
    assert loss.projection.weight.shape == (7, 5)
    loss(torch.randn(6, 5), torch.randn(6, 7)).backward()
    assert loss.projection.weight.grad.abs().sum() > 0


def test_rkd_is_zero_for_a_rescaled_copy_and_positive_otherwise():
    z = torch.randn(8, 6)
    assert RKDLoss()(z, 3.0 * z).item() < 1e-6  # distances are normalised by their mean, angles are scale-free
    assert RKDLoss()(z, torch.randn(8, 10)).item() > 1e-3


def test_bad_arguments_name_the_problem():
    with pytest.raises(AFTError, match="unknown kernel 'poly'"):
        AdaptiveKernelLoss([4], kernel="poly")
    with pytest.raises(AFTError, match="unknown transfer 'foo'"):
        build_transfer_loss("foo", [4], 3)
    with pytest.raises(AFTError, match="width 5 but the loss was built for teacher_dims=\\[4\\]"):
        AdaptiveKernelLoss([4])(torch.randn(3, 2), torch.randn(3, 5))
    assert build_transfer_loss("none", [4], 3) is None


@pytest.mark.parametrize("call, match", [
    (lambda: KDLoss(16, [12])(torch.randn(8, 16), torch.randn(8, 1)), "teacher width 12 .* got 16 and 1"),  # was a
    (lambda: KDLoss(16, [12])(torch.randn(8, 4), torch.randn(8, 12)), "student width 16 .* got 4 and 12"),  # silent
    (lambda: KDLoss(0, [12]), "student_dim must be a positive whole width"),  # broadcast, or a raw torch error
    (lambda: KDLoss(16, []), "teacher_dims must list one positive whole width"),
    (lambda: AdaptiveKernelLoss(12), "teacher_dims must list .* e.g. \\[768\\]; got 12"),
    (lambda: AdaptiveKernelLoss(["a"]), "teacher_dims must list"),
    (lambda: RKDLoss(-1.0), "distance_weight must be a finite number >= 0"),
    (lambda: RKDLoss()([[1.0, 2.0]] * 3, torch.randn(3, 2)), "takes torch tensors .* got list"),
    (lambda: AdaptiveKernelLoss([3])(torch.zeros(0, 2), torch.zeros(0, 3)), "the batch is empty"),
    (lambda: RKDLoss()(torch.zeros(4, 0), torch.zeros(4, 3)), "the batch is empty"),  # was a raw amax() error
    (lambda: AdaptiveKernelLoss(None), "teacher_dims must list"), (lambda: AdaptiveKernelLoss(6.0), "got 6.0"),
    (lambda: AdaptiveKernelLoss([6], learn_scales="no"), "learn_scales must be True or False"),
    (lambda: RKDLoss(True), "distance_weight must be a finite number"),
    (lambda: AdaptiveKernelLoss([3, 2]).scale_summary(["a"]), "1 names for 2 teachers"),
])
def test_the_losses_refuse_bad_inputs_in_one_line(call, match):
    with pytest.raises(AFTError, match=match):
        call()


def test_numpy_and_whole_float_widths_are_accepted():
    assert KDLoss(np.int64(16), [np.int64(12), 4.0]).teacher_dims == [12, 4]


@pytest.mark.parametrize("loss", [AdaptiveKernelLoss([5]), RKDLoss()], ids=["aft", "rkd"])
def test_two_rows_teach_nothing_three_do(loss):
    # why AFTConfig refuses kernel batches under 3: two centred rows are u and -u whatever the input
    def gradient(rows):
        student = torch.randn(rows, 4, generator=torch.Generator().manual_seed(rows), requires_grad=True)
        loss(student, torch.randn(rows, 5, generator=torch.Generator().manual_seed(10 + rows))).backward()
        return student.grad.abs().max().item()

    assert gradient(2) < 1e-6 and gradient(3) > 1e-4


@pytest.mark.parametrize("transfer", ["aft", "kd", "rkd"])
def test_each_transfer_loss_knows_its_option_name(transfer):
    # a resume with another --transfer is named from this (the checkpoint records the name it was saved with)
    assert build_transfer_loss(transfer, [4], 3).transfer == transfer
