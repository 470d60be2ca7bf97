"""--student_feature_point: the head's input (the paper's point, after the head's dropout) or the input of that
dropout (pre_dropout): different features while dropout is on, the same when it is off."""

import pytest
import tiny
import torch
from transformers import BertForSequenceClassification

from hf_aft.student import StudentFeatureCapture


@pytest.mark.parametrize("dropout", [0.5, 0.0])
def test_pre_dropout_differs_from_head_input_only_when_dropout_is_on(tmp_path, dropout):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny.bert_config(num_labels=2, classifier_dropout=dropout)).train()
    captures = {point: StudentFeatureCapture(model, point=point) for point in ("head_input", "pre_dropout")}
    model(input_ids=torch.randint(5, 20, (4, 6)))
    head_input, pre_dropout = captures["head_input"].pop(), captures["pre_dropout"].pop()
    assert head_input.shape == pre_dropout.shape == (4, 16)
    if dropout:
        assert not torch.equal(head_input, pre_dropout)
        assert torch.allclose(head_input[head_input != 0], pre_dropout[head_input != 0] / (1 - dropout))
    else:
        assert torch.equal(head_input, pre_dropout)


def test_pre_dropout_without_a_dropout_before_the_head_is_the_head_input():
    from transformers import ViTForImageClassification

    model = ViTForImageClassification(tiny.vision_config("vit", num_labels=3)).train()
    captures = {point: StudentFeatureCapture(model, point=point) for point in ("head_input", "pre_dropout")}
    model(pixel_values=torch.randn(2, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE))
    assert torch.equal(captures["head_input"].pop(), captures["pre_dropout"].pop())
