"""Train a segmentation network on CamVid-format data (``seg_tool train``).

Cross-entropy with void ignored and class weights (median-frequency or its square root),
optionally plus a soft-Jaccard term, an auxiliary head on the stride-16 features (deep
supervision, training only) and distillation from trained networks (``--teachers``: one
larger network, or several whose mean logits act as an ensemble);
scale/crop/flip/colour augmentation and optional pasting of chosen classes' objects from
another training frame, AdamW with a one-cycle (or constant) schedule, optionally starting
from a trained checkpoint and averaging the weights of the last epochs (``--average-from``),
per-epoch checkpoints (``last.pt``, resumable) and val mIoU through the same deploy graph
that is exported.
"""

import copy
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from seg_node.core.classes import load_classes
from seg_node.evaluation.dataset import channel_statistics, class_weights, load_split
from seg_node.core.errors import ConfigError
from seg_node.evaluation.scoring import evaluate_frames
from seg_node.models.torch_backend import (FOREIGN_CHECKPOINT_ERRORS, load_checkpoint,
                                           TorchBackend, UNREADABLE_CHECKPOINT_ERRORS)
from seg_node.evaluation.metrics import format_table, Scores
from seg_node.models.architectures import build_model
from seg_node.models.deploy import DeployModel
from seg_node.training.augment import augment, AugmentConfig, magnify, paste_objects
from seg_node.training.averaging import accumulate, refresh_batch_norm
from seg_node.training.losses import cross_entropy, distillation, LOSS_IGNORE, soft_jaccard
from seg_node.training.recipe import SCHEDULES, TrainConfig

# Settings that may change when a run is resumed; every other TrainConfig field defines the
# run (schedule length, data, losses) and must match the checkpoint.
RESUMABLE_CHANGES = frozenset({'data', 'output', 'device', 'eval_every', 'threads'})
# Settings added after the first checkpoints were written: those runs trained without them.
SETTINGS_OFF_BEFORE_ADDED = {'jaccard_weight': 0.0, 'aux_weight': 0.0,
                             'paste_classes': (), 'paste_probability': 0.0,
                             'paste_scale_max': 1.0,
                             'teachers': (), 'distill_weight': 0.0,
                             'distill_temperature': 1.0, 'distill_class_weighted': False,
                             'init_from': None,
                             'schedule': 'one-cycle', 'average_from': 0}
# The keys of an averaged.pt that pooling reads.
AVERAGE_KEYS = frozenset({'model', 'config', 'train_config', 'averaged_count'})

Result = TypeVar('Result')


def _batch(data, indices: np.ndarray, augmentation: AugmentConfig, rng: np.random.Generator,
           ignore_index: int, paste_ids: np.ndarray, paste_probability: float,
           paste_scale_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = []
    for index in indices:
        image, label = data.images[index], data.labels[index]
        if paste_ids.size and rng.random() < paste_probability:
            donor = rng.integers(len(data.images))
            donor_image, donor_label = data.images[donor], data.labels[donor]
            if paste_scale_max > 1.0:
                donor_image, donor_label = magnify(donor_image, donor_label,
                                                   rng.uniform(1.0, paste_scale_max))
            half_width = label.shape[1] // 2
            image, label = paste_objects(image, label, donor_image, donor_label,
                                         paste_ids, int(rng.integers(-half_width, half_width + 1)),
                                         bool(rng.random() < 0.5))
        pairs.append(augment(image, label, augmentation, rng, ignore_index))
    images = torch.from_numpy(np.stack([image for image, _ in pairs]))
    labels = torch.from_numpy(np.stack([label for _, label in pairs])).long()
    return images, labels


def prefetched(produce: Callable[[int], Result], count: int,
               depth: int = 2) -> Iterator[Result]:
    """Yield ``produce(0)``, ..., ``produce(count - 1)``, each made ahead in one worker thread.

    At most ``depth`` results wait at a time, so memory stays bounded. The one worker runs
    the calls in order, so a shared random generator is drawn from exactly as in a plain
    loop: the batches, and therefore the run, are the same; only augmentation overlaps the
    optimisation step (OpenCV and NumPy release the GIL while they work).
    """
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = deque(worker.submit(produce, i) for i in range(min(depth, count)))
        for i in range(count):
            result = pending.popleft().result()
            if i + depth < count:
                pending.append(worker.submit(produce, i + depth))
            yield result


def _network_input(deploy: DeployModel, images: torch.Tensor) -> torch.Tensor:
    """Return (N, H, W, 3) uint8 RGB as ``deploy``'s channels-last (N, 3, H, W) float input."""
    return deploy.normalise(images).contiguous(memory_format=torch.channels_last)


@dataclass
class Distillation:
    """The distillation term of a training step.

    Attributes:
        teachers: eval-mode trained networks, each with its own normalisation; the target is
            the mean of their logits (one teacher, or an ensemble).
        weight: weight of the term in the loss.
        temperature: softmax temperature of both distributions.
        class_weighted: weight each scored pixel by its true class's loss weight, as the
            cross-entropy does (void left out); otherwise every pixel counts the same.

    """

    teachers: list[DeployModel]
    weight: float
    temperature: float = 1.0
    class_weighted: bool = False

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Return the teachers' mean (N, K, H, W) logits for (N, H, W, 3) uint8 RGB images."""
        with torch.no_grad():
            total = sum(teacher.network(_network_input(teacher, images))
                        for teacher in self.teachers)
        return total / len(self.teachers)


def training_step(network: nn.Module, deploy: DeployModel, images: torch.Tensor,
                  labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  loss_weights: torch.Tensor, bf16: bool = False,
                  hard_fraction: float = 1.0, jaccard_weight: float = 0.0,
                  aux_head: nn.Module | None = None, aux_weight: float = 0.0,
                  distill: Distillation | None = None) -> float:
    """Run one optimisation step; return the batch's total loss.

    Args:
        network: the logits network (in train mode).
        deploy: its deploy wrapper, used for the one shared input normalisation.
        images: (N, H, W, 3) uint8 RGB crops.
        labels: (N, H, W) int64 class ids, :data:`LOSS_IGNORE` where not scored.
        optimizer: the optimiser over ``network``'s parameters.
        loss_weights: (K,) float32 loss weight per class.
        bf16: autocast the forward pass to bfloat16.
        hard_fraction: average the loss over only this fraction of scored pixels, the
            ones with the highest loss (online hard example mining); 1.0 uses them all.
        jaccard_weight: weight of the soft-Jaccard term added to the cross-entropy.
        aux_head: (C, K) 1x1 convolution on the encoder's stride-16 features, or None.
        aux_weight: weight of the auxiliary head's cross-entropy.
        distill: the distillation term, or None.
    """
    device = deploy.scale.device
    images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    inputs = _network_input(deploy, images)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits, context = network.forward_with_context(inputs)
        aux_logits = aux_head(context) if aux_head is not None else None
        teacher_logits = distill.teacher_logits(images) if distill is not None else None
    loss = cross_entropy(logits, labels, loss_weights, hard_fraction)
    if jaccard_weight:
        loss = loss + jaccard_weight * soft_jaccard(logits, labels)
    if aux_logits is not None:
        aux_logits = F.interpolate(aux_logits.float(), size=labels.shape[-2:],
                                   mode='bilinear')
        loss = loss + aux_weight * cross_entropy(aux_logits, labels, loss_weights)
    if distill is not None:
        weighting = (labels, loss_weights) if distill.class_weighted else (None, None)
        loss = loss + distill.weight * distillation(logits, teacher_logits,
                                                    distill.temperature, *weighting)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _load_distillation(config: TrainConfig, num_classes: int,
                       device: torch.device) -> Distillation | None:
    """Return the distillation term of ``config``, its eval-mode teachers on ``device``.

    None without teachers or with distillation weight 0: a term weighted 0 needs no teacher
    forward pass per step.
    """
    if not config.teachers or not config.distill_weight:
        return None
    teachers = []
    for path in config.teachers:
        # Building a teacher draws random initial weights: keep them out of the run's own
        # random state, so the same run trains the same whatever its teachers.
        with torch.random.fork_rng(devices=[]):
            teacher, teacher_config = load_checkpoint(Path(path))
        if teacher_config['num_classes'] != num_classes:
            raise ConfigError(f'teacher {path} has {teacher_config["num_classes"]} classes, '
                              f'the class file {num_classes}; train the teacher with the '
                              'same class file')
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        teachers.append(teacher.to(device, memory_format=torch.channels_last))
    return Distillation(teachers, config.distill_weight, config.distill_temperature,
                        config.distill_class_weighted)


def _epoch_batches(data, config: TrainConfig, augmentation: AugmentConfig,
                   rng: np.random.Generator, ignore_index: int,
                   paste_ids: np.ndarray) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """Draw one epoch's frame order from ``rng``; return a function making its batches.

    The function maps a step to that step's (N, H, W, 3) uint8 crops and (N, H, W) int64
    labels; each batch draws its augmentation (pasting included) from ``rng`` when made.
    """
    order = rng.permutation(len(data.images))
    return lambda step: _batch(
        data, order[step * config.batch_size:(step + 1) * config.batch_size], augmentation,
        rng, ignore_index, paste_ids, config.paste_probability, config.paste_scale_max)


def _training_inputs(produce: Callable[[int], tuple[torch.Tensor, torch.Tensor]], steps: int,
                     deploy: DeployModel) -> Iterator[torch.Tensor]:
    """Yield ``steps`` batches of ``produce`` as (N, 3, H, W) normalised network inputs."""
    for step in range(steps):
        images, _ = produce(step)
        yield _network_input(deploy, images.to(deploy.scale.device))


def _check_settings(config: TrainConfig, paste_ids: np.ndarray) -> None:
    """Raise ConfigError for settings that contradict each other, before any data is read."""
    if not 0.0 <= config.paste_probability <= 1.0:
        raise ConfigError(f'paste probability {config.paste_probability} needs to be in 0..1')
    if config.paste_scale_max < 1.0:
        raise ConfigError(f'paste scale max {config.paste_scale_max} needs to be >= 1 '
                          '(1: objects are pasted at the size they were photographed)')
    if config.paste_probability and not paste_ids.size:
        raise ConfigError(f'paste probability {config.paste_probability} needs at least one '
                          'class to paste (--paste-classes)')
    if not 0 <= config.average_from <= config.epochs:
        raise ConfigError(f'average from epoch {config.average_from} needs to be in '
                          f'0..{config.epochs} (0: no weight averaging)')
    if config.distill_weight and not config.teachers:
        raise ConfigError(f'distillation weight {config.distill_weight} needs a teacher '
                          'checkpoint (--teachers)')


def _initial_checkpoint(config: TrainConfig, num_classes: int) -> dict | None:
    """Return the checkpoint ``config.init_from`` names, checked against this run, or None."""
    if not config.init_from:
        return None
    try:
        checkpoint = torch.load(config.init_from, map_location='cpu', weights_only=False)
        stored = checkpoint['config']
    except FOREIGN_CHECKPOINT_ERRORS as err:
        raise ConfigError(f'cannot start from {config.init_from}: {err}; pass a checkpoint '
                          'written by `seg_tool train`') from err
    if (stored['arch'], stored['num_classes']) != (config.arch, num_classes):
        raise ConfigError(f'cannot start from {config.init_from}: it is {stored["arch"]} with '
                          f'{stored["num_classes"]} classes, this run {config.arch} with '
                          f'{num_classes}; pass --arch {stored["arch"]} and its class file')
    return checkpoint


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
               total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Return the learning-rate schedule ``config.schedule`` names, stepped once per batch."""
    if config.schedule == 'one-cycle':
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=total_steps, pct_start=0.1)
    if config.schedule == 'constant':
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ConfigError(f'unknown schedule {config.schedule!r}; valid: {", ".join(SCHEDULES)}')


def _save(path: Path, payload: dict) -> None:
    partial = path.with_suffix('.tmp')
    torch.save(payload, partial)
    partial.replace(path)


class Trainer:
    """One training run of a :class:`TrainConfig`: its data, networks, optimiser and progress.

    Attributes:
        rng: the generator of the training batches' frame order and augmentation.
        averaged: the weight average (``config.average_from`` > 0), or None.
        averaged_count: how many epochs' weights ``averaged`` holds.
        start_epoch: the epoch :meth:`run` starts at (0, or where a resumed run stopped).
        best_miou: the best val mIoU so far (-1 before any evaluation).

    """

    def __init__(self, config: TrainConfig) -> None:
        """Seed, check ``config``, load its data and build the networks and optimiser."""
        self.config = config
        self.output = Path(config.output)
        self.output.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.classes = load_classes(config.classes)
        self.paste_ids = self.classes.ids(config.paste_classes)
        _check_settings(config, self.paste_ids)
        data = Path(config.data)
        self.train_data = load_split(data, 'train', config.train_limit, config.image_scale)
        self.val_data = load_split(data, 'val', config.val_limit, config.image_scale)
        num_classes = self.classes.num_classes
        initial = _initial_checkpoint(config, num_classes)
        # A run that continues a trained network keeps the normalisation it was trained with.
        mean, std = ((initial['config']['mean'], initial['config']['std']) if initial
                     else channel_statistics(self.train_data.images))
        device = torch.device('cuda' if config.device == 'auto' and torch.cuda.is_available()
                              else 'cpu' if config.device == 'auto' else config.device)
        self.loss_weights = torch.from_numpy(
            class_weights(self.train_data.labels, self.classes, config.class_weighting)).to(device)
        self._build_networks(initial, mean, std, device)
        self._build_optimizer()
        self.augmentation = AugmentConfig(crop=(config.crop, config.crop),
                                          scale=(config.scale_min, config.scale_max))
        self.model_config = {'arch': config.arch, 'num_classes': num_classes,
                             'class_names': list(self.classes.names), 'mean': mean, 'std': std}
        self.start_epoch, self.best_miou = 0, -1.0

    def _build_networks(self, initial: dict | None, mean: tuple[float, float, float],
                        std: tuple[float, float, float], device: torch.device) -> None:
        """Build the network, auxiliary head, weight average and teachers on ``device``.

        Args:
            initial: a checkpoint whose weights the network starts from, or None.
            mean: per-channel RGB mean of the deploy wrappers' input normalisation.
            std: per-channel RGB standard deviation of that normalisation.
            device: where the networks run.

        """
        config, num_classes = self.config, self.classes.num_classes
        self.network = build_model(config.arch, num_classes).to(
            device, memory_format=torch.channels_last)
        self.deploy = DeployModel(self.network, mean, std).to(device)
        self.aux_head = (nn.Conv2d(self.network.encoder.widths[-1], num_classes, 1).to(device)
                         if config.aux_weight else None)
        if initial is not None:
            self.network.load_state_dict(initial['model'])
            if self.aux_head is not None and initial.get('aux_head') is not None:
                self.aux_head.load_state_dict(initial['aux_head'])
        self.averaged = copy.deepcopy(self.network) if config.average_from else None
        self.averaged_deploy = (DeployModel(self.averaged, mean, std).to(device)
                                if self.averaged else None)
        self.averaged_count = 0
        self.distill = _load_distillation(config, num_classes, device)

    def _build_optimizer(self) -> None:
        """Build AdamW over the network and auxiliary head, and its per-batch schedule."""
        config = self.config
        parameters = list(self.network.parameters())
        parameters += list(self.aux_head.parameters()) if self.aux_head is not None else []
        self.optimizer = torch.optim.AdamW(parameters, lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.steps_per_epoch = max(1, len(self.train_data.images) // config.batch_size)
        self.scheduler = _scheduler(config, self.optimizer, config.epochs * self.steps_per_epoch)

    def resume(self, path: Path) -> None:
        """Continue the run checkpointed in ``path`` (a ``last.pt``) where it stopped.

        A run with the constant schedule may be given more ``epochs`` than it was started
        with: it then continues as one run of that length would have.

        Raises:
            ConfigError: ``path`` is not a training state, or a setting that defines the run
                differs from the checkpoint's.

        """
        try:
            state = torch.load(path, map_location='cpu', weights_only=False)
            stored = {**SETTINGS_OFF_BEFORE_ADDED, **state['train_config']}
        except FOREIGN_CHECKPOINT_ERRORS as err:
            raise ConfigError(f'cannot resume {path}: {err} (not a training state written '
                              'by `seg_tool train`); remove it or train into a new '
                              '--output') from err
        # A constant learning rate does not depend on the run's length: such a run extends.
        resumable = RESUMABLE_CHANGES | (
            {'epochs'} if stored['schedule'] == self.config.schedule == 'constant' else set())
        changed = sorted(key for key, value in asdict(self.config).items()
                         if key not in resumable and stored.get(key) != value)
        if changed:
            raise ConfigError(f'cannot resume {path}: {", ".join(changed)} '
                              'differ from that run; resume with its settings or train into '
                              'a new --output')
        self.network.load_state_dict(state['model'])
        if self.aux_head is not None:
            self.aux_head.load_state_dict(state['aux_head'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        if self.averaged is not None:
            self.averaged.load_state_dict(state['averaged'])
            self.averaged_count = state['averaged_count']
        self.rng.bit_generator.state = state['numpy_rng']
        torch.set_rng_state(state['torch_rng'])
        self.start_epoch, self.best_miou = state['epoch'], state['best_miou']
        print(f'resumed {path} at epoch {self.start_epoch}', flush=True)

    def run(self) -> dict:
        """Train the remaining epochs; return the last epoch's record ({} if none is left)."""
        record = {}
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self._epoch(epoch)
        return record

    def _epoch(self, epoch: int) -> dict:
        """Train epoch ``epoch`` (0-based), average, evaluate and checkpoint; return its record."""
        record = self._train_epoch(epoch)
        last_epoch = epoch + 1 == self.config.epochs
        evaluate_now = bool(self.config.eval_every) and (
            (epoch + 1) % self.config.eval_every == 0 or last_epoch)
        self._accumulate_average(epoch)
        refreshed = bool(self.averaged_count) and (evaluate_now or last_epoch)
        if refreshed:
            self.refresh_average(epoch)
            record['averaged_epochs'] = self.averaged_count
        if evaluate_now:
            scores = self._evaluate(self.averaged_deploy if refreshed else self.deploy)
            record['val_miou'] = round(scores.miou, 4)
            record['val_iou'] = {name: round(float(v), 4) for name, v
                                 in zip(self.classes.names, scores.iou, strict=True)}
            if last_epoch:
                print(format_table(scores, self.classes.names), flush=True)
        self._write_checkpoints(epoch, record, refreshed)
        self._log(record)
        return record

    def _batches(self,
                 rng: np.random.Generator) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
        """Return :func:`_epoch_batches` of the training data, drawn from ``rng``."""
        return _epoch_batches(self.train_data, self.config, self.augmentation, rng,
                              self.classes.ignore_index, self.paste_ids)

    def _train_epoch(self, epoch: int) -> dict:
        """Run epoch ``epoch``'s optimisation steps; return its loss, learning rate and time."""
        config = self.config
        self.network.train()
        started = time.perf_counter()
        losses = []
        bar = tqdm(prefetched(self._batches(self.rng), self.steps_per_epoch),
                   total=self.steps_per_epoch, desc=f'epoch {epoch + 1}/{config.epochs}',
                   leave=False, disable=None)
        for images, labels in bar:
            labels[labels >= self.classes.num_classes] = LOSS_IGNORE
            losses.append(training_step(self.network, self.deploy, images, labels,
                                        self.optimizer, self.loss_weights, config.bf16,
                                        config.hard_fraction, config.jaccard_weight,
                                        self.aux_head, config.aux_weight, self.distill))
            self.scheduler.step()
            bar.set_postfix(loss=f'{np.mean(losses[-20:]):.3f}')
        return {'epoch': epoch + 1, 'loss': round(float(np.mean(losses)), 4),
                'lr': self.scheduler.get_last_lr()[0],
                'epoch_s': round(time.perf_counter() - started, 1)}

    def _accumulate_average(self, epoch: int) -> None:
        """Fold the network's weights into the average from epoch ``config.average_from`` on."""
        if self.averaged is not None and epoch + 1 >= self.config.average_from:
            accumulate(self.averaged, self.network, self.averaged_count)
            self.averaged_count += 1

    def refresh_average(self, epoch: int) -> None:
        """Recompute the average's batch-norm statistics on augmented training batches.

        The batches are drawn from a generator of their own, seeded by the run and
        ``epoch``, so the training batches stay those of a run without averaging.
        """
        refresh_rng = np.random.default_rng([self.config.seed, epoch + 1])
        refresh_batch_norm(self.averaged, _training_inputs(
            self._batches(refresh_rng), self.steps_per_epoch, self.deploy))

    def _evaluate(self, model: DeployModel) -> Scores:
        """Return the scores of ``model`` (switched to eval mode) on the val frames."""
        model.eval()
        matrix, _ = evaluate_frames(TorchBackend(None, model=model).infer,
                                    zip(self.val_data.images, self.val_data.labels, strict=True),
                                    self.classes.num_classes)
        return matrix.scores()

    def _log(self, record: dict) -> None:
        """Append ``record`` to ``log.jsonl`` and print it (without the per-class IoU)."""
        with open(self.output / 'log.jsonl', 'a') as log:
            log.write(json.dumps(record) + '\n')
        print(' '.join(f'{k}={v}' for k, v in record.items() if k != 'val_iou'), flush=True)

    def _write_checkpoints(self, epoch: int, record: dict, refreshed: bool) -> None:
        """Write ``last.pt`` and, as the run calls for, ``averaged.pt`` or ``best.pt``.

        Args:
            epoch: the epoch just finished (0-based).
            record: its log record.
            refreshed: whether the average's batch-norm statistics were just recomputed.

        """
        aux_head = self.aux_head.state_dict() if self.aux_head is not None else None
        checkpoint = {'model': self.network.state_dict(), 'config': self.model_config,
                      'train_config': asdict(self.config), 'epoch': epoch + 1,
                      'optimizer': self.optimizer.state_dict(),
                      'scheduler': self.scheduler.state_dict(),
                      'numpy_rng': self.rng.bit_generator.state,
                      'torch_rng': torch.get_rng_state(), 'best_miou': self.best_miou,
                      'record': record, 'aux_head': aux_head}
        if self.averaged is not None:
            checkpoint['averaged'] = self.averaged.state_dict()
            checkpoint['averaged_count'] = self.averaged_count
            if refreshed:
                _save(self.output / 'averaged.pt', {
                    'model': self.averaged.state_dict(), 'config': self.model_config,
                    'train_config': asdict(self.config), 'epoch': epoch + 1,
                    'averaged_count': self.averaged_count, 'record': record})
        elif record.get('val_miou', -1.0) > self.best_miou:
            self.best_miou = checkpoint['best_miou'] = record['val_miou']
            _save(self.output / 'best.pt', checkpoint)
        _save(self.output / 'last.pt', checkpoint)


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run training; return the last evaluation record.

    Writes ``last.pt`` (every epoch), ``best.pt`` (best val mIoU) and ``log.jsonl`` into
    ``config.output``. With ``resume`` it continues from ``last.pt`` there.

    With ``config.average_from`` = E > 0 the weights at the end of epoch E and of every later
    epoch are averaged; the average, its batch-norm statistics recomputed on training
    batches, is what is evaluated and is written as ``averaged.pt`` (a checkpoint like any
    other) at every evaluation and at the end. ``best.pt`` is then not written: the average
    is the run's result, not one epoch picked on val.
    """
    trainer = Trainer(config)
    last = trainer.output / 'last.pt'
    if resume and last.exists():
        trainer.resume(last)
    return trainer.run()


def pool_averages(paths: Sequence[Path], output: Path, data: str | None = None,
                  threads: int = 0) -> dict:
    """Pool the weight averages of runs that continued one network; write ``averaged.pt``.

    The pooled parameters are the equal-weight mean of all the runs' snapshots (each run
    counts by its ``averaged_count``); batch-norm statistics are then recomputed on
    augmented training batches of the first run's recipe, as a run does for its own average.
    The result is a checkpoint like ``averaged.pt`` (calibrate, export, evaluate, pool again).

    Args:
        paths: ``averaged.pt`` checkpoints of runs started from the same ``init_from``.
        output: folder for the pooled ``averaged.pt``.
        data: CamVid-format folder of the training frames (None: the first run's).
        threads: CPU threads (0: torch's default).

    Returns:
        {'output': path written, 'averaged_count': snapshots pooled, 'pooled_from': paths}.

    Raises:
        ConfigError: fewer than two checkpoints, one given twice or not a weight average,
            or averages that did not continue the same network.

    """
    if len(paths) < 2:
        raise ConfigError('pooling needs at least two averaged.pt checkpoints')
    repeated = [path for path in paths if paths.count(path) > 1]
    if repeated:
        raise ConfigError(f"{repeated[0]} is given more than once; pass each run's "
                          'averaged.pt once (each already counts by its averaged epochs)')
    averages = [_load_average(path) for path in paths]
    first_start = averages[0]['train_config'].get('init_from')
    for path, average in zip(paths[1:], averages[1:], strict=True):
        start = average['train_config'].get('init_from')
        if start is None or start != first_start:
            raise ConfigError(f'cannot pool {path} with {paths[0]}: they continued '
                              f'{start} and {first_start}; only averages of runs started from '
                              'the same trained network (--init-from) lie in one region '
                              'whose mean is a good network')
        if average['config'] != averages[0]['config']:
            raise ConfigError(f'cannot pool {path} with {paths[0]}: their architecture, '
                              'classes or input normalisation differ')
    stored = {**SETTINGS_OFF_BEFORE_ADDED, **averages[0]['train_config']}
    # The network starts from the first average, whose normalisation every pooled run shares;
    # no teacher is needed to re-estimate batch-norm statistics.
    trainer = Trainer(TrainConfig(**{
        **stored, 'output': str(output), 'data': data or stored['data'], 'threads': threads,
        'init_from': str(paths[0]), 'teachers': (), 'distill_weight': 0.0}))
    trainer.averaged_count = averages[0]['averaged_count']
    other = copy.deepcopy(trainer.averaged)
    for average in averages[1:]:
        other.load_state_dict(average['model'])
        accumulate(trainer.averaged, other, trainer.averaged_count, average['averaged_count'])
        trainer.averaged_count += average['averaged_count']
    trainer.refresh_average(trainer.config.epochs - 1)
    pooled_from = [str(path) for path in paths]
    _save(trainer.output / 'averaged.pt', {
        'model': trainer.averaged.state_dict(), 'config': trainer.model_config,
        'train_config': {**stored, 'output': str(output)},
        'averaged_count': trainer.averaged_count, 'pooled_from': pooled_from})
    return {'output': str(trainer.output / 'averaged.pt'),
            'averaged_count': trainer.averaged_count, 'pooled_from': pooled_from}


def _load_average(path: Path) -> dict:
    """Return the ``averaged.pt`` checkpoint in ``path``, or raise ConfigError."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except UNREADABLE_CHECKPOINT_ERRORS as err:
        raise ConfigError(f'cannot read {path}: {err}; pass averaged.pt checkpoints written '
                          'by `seg_tool train --average-from`') from err
    keys = set(checkpoint) if isinstance(checkpoint, dict) else set()
    if 'averaged' in keys:
        raise ConfigError(f'{path} is the training state of an averaging run, whose model is '
                          'its last epoch; pass the averaged.pt written next to it')
    missing = sorted(AVERAGE_KEYS - keys)
    if missing:
        raise ConfigError(f'{path} is not a weight average (it lacks {", ".join(missing)}); '
                          'pass the averaged.pt of a run trained with --average-from')
    return checkpoint
