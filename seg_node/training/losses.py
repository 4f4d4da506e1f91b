"""Training losses: weighted cross-entropy (with optional hard-pixel mining) and soft Jaccard.

Cross-entropy alone optimises per-pixel accuracy, which large classes dominate; the soft
Jaccard term is a differentiable mIoU surrogate that gives every class present in the batch
the same weight, so thin classes (pole, sign) count as much as road. The distillation term
pulls a network's class distribution towards a teacher's (a larger network, or the mean of
several), either on every pixel (void included) or weighted by the true class like the
cross-entropy.
"""

import torch
import torch.nn.functional as F

LOSS_IGNORE = 255


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor,
                  hard_fraction: float = 1.0) -> torch.Tensor:
    """Return the mean weighted cross-entropy over scored pixels.

    Args:
        logits: (N, K, H, W) float class scores.
        labels: (N, H, W) int64 class ids, :data:`LOSS_IGNORE` where not scored.
        class_weights: (K,) float32 loss weight per class.
        hard_fraction: average only this fraction of scored pixels, those with the highest
            loss (online hard example mining); 1.0 uses them all.

    """
    pixel_losses = F.cross_entropy(logits.float(), labels, weight=class_weights,
                                   ignore_index=LOSS_IGNORE, reduction='none')
    scored = pixel_losses[labels != LOSS_IGNORE]
    if hard_fraction < 1.0:
        scored = scored.topk(max(1, int(hard_fraction * scored.numel()))).values
    return scored.mean()


def soft_jaccard(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Return 1 - mean soft IoU over the classes present in ``labels``.

    Soft IoU of class c is sum(p_c * y_c) / sum(p_c + y_c - p_c * y_c) over scored pixels,
    with p the softmax probabilities and y the one-hot labels.

    Args:
        logits: (N, K, H, W) float class scores.
        labels: (N, H, W) int64 class ids, :data:`LOSS_IGNORE` where not scored.
        eps: smoothing added to numerator and denominator.

    """
    num_classes = logits.shape[1]
    scored = (labels != LOSS_IGNORE).unsqueeze(1)
    probabilities = logits.float().softmax(dim=1) * scored
    one_hot = F.one_hot(labels.masked_fill(~scored[:, 0], 0), num_classes)
    one_hot = one_hot.permute(0, 3, 1, 2).to(probabilities.dtype) * scored
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    label_area = one_hot.sum(dims)
    union = probabilities.sum(dims) + label_area - intersection
    present = label_area > 0
    iou = (intersection[present] + eps) / (union[present] + eps)
    return 1.0 - iou.mean()


def distillation(logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float = 1.0, labels: torch.Tensor | None = None,
                 class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Return the mean per-pixel KL(teacher || student) of temperature-softened softmaxes.

    Scaled by ``temperature ** 2`` so its gradients keep their size as the temperature
    changes (Hinton et al., 2015). Without ``class_weights`` every pixel counts the same: the
    teacher has an answer for void. With them, the mean is weighted by each scored pixel's
    true-class weight and void is left out, so rare classes keep the weight the
    cross-entropy gives them instead of being outnumbered by road and sky.

    Args:
        logits: (N, K, H, W) float student class scores.
        teacher_logits: (N, K, H, W) float teacher class scores (no gradient needed).
        temperature: softmax temperature applied to both.
        labels: (N, H, W) int64 class ids, :data:`LOSS_IGNORE` where not scored; needed
            with ``class_weights``.
        class_weights: (K,) float32 weight per true class, or None for the plain mean.

    Raises:
        ValueError: ``class_weights`` without ``labels``.

    """
    student = F.log_softmax(logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    pixel_kl = (teacher.exp() * (teacher - student)).sum(dim=1)
    if class_weights is None:
        return pixel_kl.mean() * temperature ** 2
    if labels is None:
        raise ValueError('class-weighted distillation needs the labels')
    scored = labels != LOSS_IGNORE
    weights = class_weights[labels[scored]]
    return (pixel_kl[scored] * weights).sum() / weights.sum() * temperature ** 2
