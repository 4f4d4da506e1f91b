"""Loss maths against hand-computed values, and the auxiliary head's contribution."""

import math
from types import SimpleNamespace

import pytest
import torch

from seg_node.core.classes import load_classes
from seg_node.models.architectures import build_model
from seg_node.models.deploy import DeployModel
from seg_node.training.losses import cross_entropy, distillation, LOSS_IGNORE, soft_jaccard
from seg_node.training.train import Distillation, training_step


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


@pytest.fixture
def frozen_step(camvid_pairs) -> SimpleNamespace:
    """Return a 64x96 crop of a real frame, its labels and an eval-mode ``fast`` network.

    Eval mode and a zero learning rate make one ``training_step`` reproducible by hand.
    """
    classes = load_classes()
    image, label = camvid_pairs[0]
    labels = torch.from_numpy(label[None, :64, :96].astype('int64'))
    labels[labels >= classes.num_classes] = LOSS_IGNORE
    torch.manual_seed(0)
    network = build_model('fast', classes.num_classes).eval()
    return SimpleNamespace(
        num_classes=classes.num_classes, images=torch.from_numpy(image[None, :64, :96].copy()),
        labels=labels, weights=torch.ones(classes.num_classes), network=network,
        deploy=DeployModel(network, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3)))


def test_auxiliary_head_adds_its_weighted_cross_entropy(frozen_step):
    network, deploy, images = frozen_step.network, frozen_step.deploy, frozen_step.images
    labels, weights = frozen_step.labels, frozen_step.weights
    aux_head = torch.nn.Conv2d(network.encoder.widths[-1], frozen_step.num_classes, 1)
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


def test_distillation_by_hand():
    # One pixel, two classes. Teacher p = (0.8, 0.2), student q = (0.5, 0.5):
    # KL = 0.8 ln(0.8 / 0.5) + 0.2 ln(0.2 / 0.5).
    teacher = torch.log(torch.tensor([0.8, 0.2])).view(1, 2, 1, 1)
    student = torch.zeros(1, 2, 1, 1)
    expected = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    assert distillation(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_distillation_softens_both_sides_and_rescales_by_the_squared_temperature():
    teacher = torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1)
    student = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    p = torch.softmax(teacher.flatten() / 2.0, 0)
    q = torch.softmax(student.flatten() / 2.0, 0)
    expected = 4.0 * float((p * (p / q).log()).sum())
    assert distillation(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_distillation_vanishes_when_the_student_agrees_and_counts_every_pixel():
    teacher = torch.randn(2, 4, 3, 5)
    assert distillation(teacher + 7.0, teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = teacher.clone()
    student[0, :, 0, 0] = 0.0  # one pixel of 30 disagrees
    per_pixel = distillation(student[:1, :, :1, :1], teacher[:1, :, :1, :1]).item()
    assert distillation(student, teacher).item() == pytest.approx(per_pixel / 30, rel=1e-5)


def test_class_weighted_distillation_by_hand():
    # Three pixels: road (weight 1), pole (weight 3), void (left out). Per-pixel KLs k0, k1:
    # the term is (1 * k0 + 3 * k1) / (1 + 3), whatever the void pixel's KL.
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]]).T.reshape(1, 2, 1, 3)
    student = torch.zeros(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, LOSS_IGNORE]]])
    weights = torch.tensor([1.0, 3.0])
    p = torch.softmax(teacher[0, :, 0].T, 1)
    kl = (p * (p / 0.5).log()).sum(1)
    expected = float((kl[0] + 3 * kl[1]) / 4)
    assert distillation(student, teacher, 1.0, labels, weights).item() == pytest.approx(
        expected, rel=1e-6)
    assert distillation(student, teacher).item() == pytest.approx(float(kl.mean()), rel=1e-6)
    with pytest.raises(ValueError, match='needs the labels'):
        distillation(student, teacher, 1.0, None, weights)


def test_teachers_add_the_distillation_term_towards_their_mean_logits(frozen_step):
    network, deploy, images = frozen_step.network, frozen_step.deploy, frozen_step.images
    labels = frozen_step.labels.clone()
    labels[:, :, 48:], labels[:, :8] = 2, LOSS_IGNORE  # several classes, and some void
    weights = torch.linspace(0.5, 2.0, frozen_step.num_classes)
    teachers = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        teacher = build_model('fast_wide', frozen_step.num_classes)
        teacher.head.weight.data *= 50.0  # confident teachers that vary from pixel to pixel
        teachers.append(DeployModel(teacher, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)).eval())
    optimizer = torch.optim.SGD(network.parameters(), lr=0.0)
    with torch.no_grad():
        logits = network(deploy.normalise(images))
        mean_logits = sum(teacher.network(teacher.normalise(images))
                          for teacher in teachers) / 2
        plain = (cross_entropy(logits, labels, weights)
                 + 0.7 * distillation(logits, mean_logits, 2.0))
        weighted = (cross_entropy(logits, labels, weights)
                    + 0.7 * distillation(logits, mean_logits, 2.0, labels, weights))
    assert plain.item() != pytest.approx(weighted.item(), rel=1e-2)
    for class_weighted, expected in ((False, plain), (True, weighted)):
        distill = Distillation(teachers, 0.7, 2.0, class_weighted)
        loss = training_step(network, deploy, images, labels, optimizer, weights,
                             distill=distill)
        assert loss == pytest.approx(expected.item(), rel=1e-5)
