"""Loss maths against hand-computed values, and the auxiliary head's contribution."""

import pytest
import torch

from seg_node.classes import load_classes
from seg_node.models.architectures import build_model
from seg_node.models.deploy import DeployModel
from seg_node.training.losses import cross_entropy, LOSS_IGNORE, soft_jaccard
from seg_node.training.train import training_step


def test_soft_jaccard_of_uniform_scores_by_hand():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    # Per class: intersection 0.5, union 0.5 + 0.5 + 1 - 0.5 = 1.5; (0.5 + 1) / (1.5 + 1).
    assert soft_jaccard(logits, torch.tensor([[[0, 1]]])).item() == pytest.approx(0.4)


def test_soft_jaccard_ignores_void_and_absent_classes():
    logits = torch.zeros(1, 3, 1, 2)  # p = 1/3 everywhere
    labels = torch.tensor([[[0, LOSS_IGNORE]]])
    # Only class 0 is present and only the first pixel is scored:
    # intersection 1/3, union 1/3 + 1 - 1/3 = 1; (1/3 + 1) / (1 + 1).
    assert soft_jaccard(logits, labels).item() == pytest.approx(1 - (4 / 3) / 2)


def test_soft_jaccard_of_confident_correct_scores_is_near_zero():
    labels = torch.randint(0, 4, (2, 8, 8))
    logits = 50.0 * torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert soft_jaccard(logits, labels, eps=0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_auxiliary_head_adds_its_weighted_cross_entropy(camvid_pairs):
    classes = load_classes()
    image, label = camvid_pairs[0]
    images = torch.from_numpy(image[None, :64, :96].copy())
    labels = torch.from_numpy(label[None, :64, :96].astype('int64'))
    labels[labels >= classes.num_classes] = LOSS_IGNORE
    weights = torch.ones(classes.num_classes)
    torch.manual_seed(0)
    network = build_model('fast', classes.num_classes).eval()
    deploy = DeployModel(network, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
    aux_head = torch.nn.Conv2d(network.encoder.widths[-1], classes.num_classes, 1)
    optimizer = torch.optim.SGD([*network.parameters(), *aux_head.parameters()], lr=0.0)
    with torch.no_grad():
        inputs = deploy.normalise(images)
        logits, context = network.forward_with_context(inputs)
        aux_logits = torch.nn.functional.interpolate(aux_head(context), size=(64, 96),
                                                     mode='bilinear')
        expected = (cross_entropy(logits, labels, weights)
                    + 0.5 * soft_jaccard(logits, labels)
                    + 0.4 * cross_entropy(aux_logits, labels, weights))
    loss = training_step(network, deploy, images, labels, optimizer, weights,
                         jaccard_weight=0.5, aux_head=aux_head, aux_weight=0.4)
    assert loss == pytest.approx(expected.item(), rel=1e-5)
