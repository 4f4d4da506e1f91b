"""A few training steps on real CamVid fixtures; export and evaluate agree on the result."""

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CAMVID_FIXTURES
from seg_node.core.classes import load_classes
from seg_node.tools.cli.main import main as seg_tool
from seg_node.core.errors import ConfigError
from seg_node.models.architectures import build_model
from seg_node.models.deploy import DeployModel
from seg_node.training import train as train_module
from seg_node.training.averaging import accumulate
from seg_node.training.train import (LOSS_IGNORE, prefetched, train, TrainConfig, training_step)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    """Make a CamVid-format folder whose train and val splits are the fixture frames."""
    folder = tmp_path_factory.mktemp('camvid')
    lines = [f'{CAMVID_FIXTURES / "val" / p.name} {CAMVID_FIXTURES / "valannot" / p.name}'
             for p in sorted((CAMVID_FIXTURES / 'val').glob('*.png'))]
    for split in ('train', 'val'):
        (folder / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return folder


@pytest.fixture(scope='module')
def run(data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp('run')
    train(TrainConfig(data=str(data), output=str(output), arch='fast', epochs=6,
                      batch_size=2, crop=96, eval_every=3, threads=2, seed=3))
    return output


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)['loss'] for line in (run_dir / 'log.jsonl').read_text().splitlines()]


def one_epoch_losses(data: Path, output: Path, **settings) -> list[float]:
    """Train the small 'fast' run (one epoch, seed 5) with ``settings``; return its losses."""
    train(TrainConfig(data=str(data), output=str(output), arch='fast', epochs=1,
                      batch_size=2, crop=96, eval_every=0, threads=2, seed=5, **settings))
    return losses(output)


def test_a_few_steps_on_real_frames_lower_the_loss(camvid_pairs):
    torch.manual_seed(0)
    classes = load_classes()
    network = build_model('fast', classes.num_classes).train()
    deploy = DeployModel(network, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
    images = torch.from_numpy(np.stack([image[100:228, 200:328] for image, _ in camvid_pairs]))
    labels = torch.from_numpy(np.stack([label[100:228, 200:328].astype(np.int64)
                                        for _, label in camvid_pairs]))
    labels[labels >= classes.num_classes] = LOSS_IGNORE
    weights = torch.ones(classes.num_classes)
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3)
    history = [training_step(network, deploy, images, labels, optimizer, weights)
               for _ in range(15)]
    assert history[-1] < 0.7 * history[0]


def test_training_run_writes_log_and_checkpoints(run):
    assert len(losses(run)) == 6
    assert (run / 'last.pt').exists() and (run / 'best.pt').exists()
    records = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    assert 0.0 <= records[-1]['val_miou'] <= 1.0
    assert set(records[-1]['val_iou']) >= {'pole', 'sign_symbol', 'pedestrian', 'bicyclist'}


def test_prefetching_draws_from_a_shared_generator_as_a_plain_loop_does():
    def draw(generator: np.random.Generator) -> list[float]:
        return [float(generator.random()) for _ in range(3)]

    plain, shared = np.random.default_rng(7), np.random.default_rng(7)
    expected = [draw(plain) for _ in range(10)]
    assert list(prefetched(lambda _: draw(shared), 10)) == expected


def test_prefetching_keeps_at_most_depth_results_waiting():
    made = []
    for consumed, value in enumerate(prefetched(lambda i: made.append(i) or i * i, 8, depth=2)):
        assert value == consumed * consumed
        assert len(made) <= consumed + 3  # the one being consumed plus two waiting
    assert made == list(range(8))


def test_prefetching_raises_the_workers_error():
    def produce(i: int) -> int:
        if i == 3:
            raise ValueError('bad frame 3')
        return i

    seen = []
    with pytest.raises(ValueError, match='bad frame 3'):
        seen.extend(prefetched(produce, 6))
    assert seen == [0, 1, 2]


def test_same_seed_gives_the_same_run(run, data, tmp_path):
    train(TrainConfig(data=str(data), output=str(tmp_path), arch='fast', epochs=6,
                      batch_size=2, crop=96, eval_every=0, threads=2, seed=3))
    assert losses(tmp_path) == pytest.approx(losses(run), rel=1e-4)


def test_resume_continues_from_the_last_epoch(data, tmp_path, capsys):
    config = TrainConfig(data=str(data), output=str(tmp_path), arch='fast', epochs=2,
                         batch_size=2, crop=96, eval_every=0, threads=2)
    train(config)
    train(config, resume=True)
    assert 'resumed' in capsys.readouterr().out
    assert len(losses(tmp_path)) == 2


def test_resume_with_a_different_schedule_is_refused_by_name(data, tmp_path):
    config = TrainConfig(data=str(data), output=str(tmp_path), arch='fast', epochs=1,
                         batch_size=2, crop=96, eval_every=0, threads=2)
    train(config)
    longer = TrainConfig(**{**asdict(config), 'epochs': 3, 'threads': 1})
    with pytest.raises(ConfigError, match=r'epochs differ from that run'):
        train(longer, resume=True)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint', 'NO_SETTINGS', 'LIST'])
def test_resume_from_a_file_that_is_not_a_training_state_says_so(data, tmp_path, content):
    config = TrainConfig(data=str(data), output=str(tmp_path), arch='fast', epochs=1,
                         batch_size=2, crop=96, eval_every=0, threads=2)
    if content == 'NO_SETTINGS':
        torch.save({'model': {}}, tmp_path / 'last.pt')
    elif content == 'LIST':
        torch.save([1, 2], tmp_path / 'last.pt')
    else:
        (tmp_path / 'last.pt').write_bytes(content)
    with pytest.raises(ConfigError, match=r'cannot resume .*last\.pt: .*remove it or train '
                                          r'into a new --output'):
        train(config, resume=True)


def test_a_checkpoint_older_than_a_setting_ran_without_it(data, tmp_path, capsys):
    config = TrainConfig(data=str(data), output=str(tmp_path), arch='fast', epochs=1,
                         batch_size=2, crop=96, eval_every=0, threads=2, jaccard_weight=0.0)
    train(config)
    state = torch.load(tmp_path / 'last.pt', weights_only=False)
    del state['train_config']['jaccard_weight']
    torch.save(state, tmp_path / 'last.pt')
    train(config, resume=True)
    assert 'resumed' in capsys.readouterr().out
    with pytest.raises(ConfigError, match='jaccard_weight differ'):
        train(TrainConfig(**{**asdict(config), 'jaccard_weight': 1.0}), resume=True)


def test_checkpoint_and_its_export_score_identically(run, data, tmp_path, capsys):
    model = tmp_path / 'model.onnx'
    assert seg_tool(['export', str(run / 'last.pt'), '--output', str(model),
                     '--data', str(data), '--parity-frames', '2']) == 0
    assert 'label agreement' in capsys.readouterr().out
    scores = {}
    for name, path in (('checkpoint', run / 'last.pt'), ('onnx', model)):
        report = tmp_path / f'{name}.json'
        assert seg_tool(['evaluate', '--model', str(path), '--data', str(data),
                         '--json', str(report)]) == 0
        scores[name] = json.loads(report.read_text())
    assert scores['onnx']['frames'] == scores['checkpoint']['frames'] == 3
    assert scores['onnx']['miou'] == pytest.approx(scores['checkpoint']['miou'], abs=1e-3)


def test_hard_example_mining_averages_the_hardest_pixels(camvid_pairs):
    classes = load_classes()
    images = torch.from_numpy(np.stack([image[:128, :128] for image, _ in camvid_pairs]))
    labels = torch.from_numpy(np.stack([label[:128, :128].astype(np.int64)
                                        for _, label in camvid_pairs]))
    labels[labels >= classes.num_classes] = LOSS_IGNORE
    first_losses = {}
    for fraction in (1.0, 0.25):
        torch.manual_seed(0)
        network = build_model('fast', classes.num_classes).train()
        deploy = DeployModel(network, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
        optimizer = torch.optim.SGD(network.parameters(), lr=0.0)
        first_losses[fraction] = training_step(network, deploy, images, labels, optimizer,
                                               torch.ones(classes.num_classes),
                                               hard_fraction=fraction)
    assert first_losses[0.25] > first_losses[1.0]


def test_pasting_reaches_the_training_batches(data, tmp_path):
    runs = {}
    for probability in (0.0, 1.0):
        output = tmp_path / str(probability)
        runs[probability] = one_epoch_losses(data, output, paste_classes=('pole', 'pedestrian'),
                                             paste_probability=probability)
        state = torch.load(output / 'last.pt', weights_only=False)
        assert state['train_config']['paste_classes'] == ('pole', 'pedestrian')
    assert runs[1.0] != pytest.approx(runs[0.0], rel=1e-4)


def test_magnified_pasting_reaches_the_training_batches(data, tmp_path):
    runs = {}
    for scale_max in (1.0, 2.5):
        runs[scale_max] = one_epoch_losses(data, tmp_path / str(scale_max),
                                           paste_classes=('pole',), paste_probability=1.0,
                                           paste_scale_max=scale_max)
    assert runs[2.5] != pytest.approx(runs[1.0], rel=1e-4)
    config = TrainConfig(data=str(data), output=str(tmp_path / 'bad'), epochs=1,
                         paste_classes=('pole',), paste_probability=1.0, paste_scale_max=0.5)
    with pytest.raises(ConfigError, match='paste scale max 0.5 needs to be >= 1'):
        train(config)


@pytest.mark.parametrize(('classes', 'probability'), [(('pole',), 1.5), ((), 0.5)])
def test_paste_settings_are_refused_before_training(data, tmp_path, classes, probability):
    config = TrainConfig(data=str(data), output=str(tmp_path), epochs=1, batch_size=2,
                         crop=96, eval_every=0, threads=2, paste_classes=classes,
                         paste_probability=probability)
    with pytest.raises(ConfigError, match='paste probability'):
        train(config)
    assert not (tmp_path / 'last.pt').exists()


def test_distillation_reaches_training_and_is_stored_with_the_run(run, data, tmp_path):
    teacher = str(run / 'last.pt')
    settings = {'off': {'teachers': (teacher,), 'distill_weight': 0.0},
                'one': {'teachers': (teacher,), 'distill_weight': 1.0},
                'twice': {'teachers': (teacher, teacher), 'distill_weight': 1.0},
                'weighted': {'teachers': (teacher,), 'distill_weight': 1.0,
                             'distill_class_weighted': True}}
    losses = {name: one_epoch_losses(data, tmp_path / name, distill_temperature=2.0, **given)
              for name, given in settings.items()}
    stored = torch.load(tmp_path / 'weighted' / 'last.pt', weights_only=False)['train_config']
    assert (stored['teachers'], stored['distill_class_weighted']) == ((teacher,), True)
    assert losses['one'] != pytest.approx(losses['off'], rel=1e-4)
    # The mean of two identical teachers is that teacher.
    assert losses['twice'] == pytest.approx(losses['one'], rel=1e-5)
    assert losses['weighted'] != pytest.approx(losses['one'], rel=1e-4)


def test_distillation_without_a_teacher_is_refused_before_training(data, tmp_path):
    config = TrainConfig(data=str(data), output=str(tmp_path), epochs=1, batch_size=2,
                         crop=96, eval_every=0, threads=2, distill_weight=1.0)
    with pytest.raises(ConfigError, match='needs a teacher checkpoint'):
        train(config)
    assert not (tmp_path / 'last.pt').exists()


def test_a_teacher_with_other_classes_is_refused(run, data, tmp_path):
    state = torch.load(run / 'last.pt', weights_only=False)
    state['model'] = build_model('fast', 5).state_dict()
    state['config'] = {**state['config'], 'num_classes': 5}
    torch.save(state, tmp_path / 'five_classes.pt')
    config = TrainConfig(data=str(data), output=str(tmp_path / 'run'), epochs=1,
                         batch_size=2, crop=96, eval_every=0, threads=2,
                         teachers=(str(tmp_path / 'five_classes.pt'),), distill_weight=1.0)
    with pytest.raises(ConfigError, match='has 5 classes'):
        train(config)


def _parameters(path: Path) -> dict[str, torch.Tensor]:
    """Return the network parameters (not batch-norm buffers) stored in a checkpoint."""
    state = torch.load(path, weights_only=False)['model']
    names = {name for name, _ in build_model('fast', load_classes().num_classes)
             .named_parameters()}
    return {name: value for name, value in state.items() if name in names}


CONSTANT_RUN = {'arch': 'fast', 'batch_size': 2, 'crop': 96, 'eval_every': 0, 'threads': 2,
                'seed': 4, 'schedule': 'constant', 'lr': 1e-3}


def test_weight_averaging_averages_the_chosen_epochs_and_leaves_the_run_alone(data, tmp_path):
    train(TrainConfig(data=str(data), output=str(tmp_path / 'two'), epochs=2, **CONSTANT_RUN))
    train(TrainConfig(data=str(data), output=str(tmp_path / 'three'), epochs=3,
                      average_from=2, **CONSTANT_RUN))
    assert losses(tmp_path / 'three')[:2] == pytest.approx(losses(tmp_path / 'two'), rel=1e-5)
    epoch_two = _parameters(tmp_path / 'two' / 'last.pt')
    epoch_three = _parameters(tmp_path / 'three' / 'last.pt')
    averaged = _parameters(tmp_path / 'three' / 'averaged.pt')
    assert averaged.keys() == epoch_two.keys()
    for name, value in averaged.items():
        torch.testing.assert_close(value, (epoch_two[name] + epoch_three[name]) / 2)
    assert epoch_two['head.bias'].tolist() != pytest.approx(epoch_three['head.bias'].tolist())
    stored = torch.load(tmp_path / 'three' / 'averaged.pt', weights_only=False)
    assert (stored['averaged_count'], stored['epoch']) == (2, 3)
    # batch-norm statistics re-measured for the average: one pass of one batch (3 frames // 2)
    counts = {value.item() for name, value in stored['model'].items()
              if name.endswith('num_batches_tracked')}
    assert counts == {1}
    assert not (tmp_path / 'three' / 'best.pt').exists()
    assert [json.loads(line)['lr'] for line in
            (tmp_path / 'three' / 'log.jsonl').read_text().splitlines()] == [1e-3] * 3


def test_an_interrupted_averaging_run_resumes_to_the_same_average(data, tmp_path, monkeypatch):
    config = TrainConfig(data=str(data), output=str(tmp_path / 'whole'), epochs=3,
                         average_from=1, **CONSTANT_RUN)
    train(config)
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        accumulate(*args)

    monkeypatch.setattr(train_module, 'accumulate', interrupted)
    resumed = TrainConfig(**{**asdict(config), 'output': str(tmp_path / 'resumed')})
    with pytest.raises(KeyboardInterrupt):
        train(resumed)
    assert not (tmp_path / 'resumed' / 'averaged.pt').exists()
    monkeypatch.undo()
    train(resumed, resume=True)
    whole = _parameters(tmp_path / 'whole' / 'averaged.pt')
    for name, value in _parameters(tmp_path / 'resumed' / 'averaged.pt').items():
        torch.testing.assert_close(value, whole[name])


def test_a_constant_rate_run_extends_to_more_epochs_as_one_longer_run(data, tmp_path):
    longer = TrainConfig(data=str(data), output=str(tmp_path / 'three'), epochs=3,
                         average_from=1, **CONSTANT_RUN)
    train(longer)
    shorter = TrainConfig(**{**asdict(longer), 'output': str(tmp_path / 'extended'),
                             'epochs': 2})
    train(shorter)
    train(TrainConfig(**{**asdict(shorter), 'epochs': 3}), resume=True)
    assert losses(tmp_path / 'extended') == pytest.approx(losses(tmp_path / 'three'), rel=1e-5)
    whole = _parameters(tmp_path / 'three' / 'averaged.pt')
    for name, value in _parameters(tmp_path / 'extended' / 'averaged.pt').items():
        torch.testing.assert_close(value, whole[name])
    stored = torch.load(tmp_path / 'extended' / 'averaged.pt', weights_only=False)
    assert (stored['averaged_count'], stored['epoch']) == (3, 3)


def test_a_run_started_from_a_checkpoint_starts_from_its_weights(run, data, tmp_path):
    train(TrainConfig(data=str(data), output=str(tmp_path), epochs=1,
                      init_from=str(run / 'last.pt'), **{**CONSTANT_RUN, 'lr': 0.0}))
    started = _parameters(run / 'last.pt')
    for name, value in _parameters(tmp_path / 'last.pt').items():
        torch.testing.assert_close(value, started[name])
    stored = torch.load(tmp_path / 'last.pt', weights_only=False)['config']
    original = torch.load(run / 'last.pt', weights_only=False)['config']
    assert (stored['mean'], stored['std']) == (original['mean'], original['std'])


@pytest.mark.parametrize(('settings', 'message'), [
    ({'arch': 'fast_wide', 'init_from': 'RUN'}, r'it is fast with \d+ classes, this run '
                                                r'fast_wide .*pass --arch fast'),
    ({'init_from': 'MISSING'}, 'cannot start from .*missing.pt'),
    ({'init_from': 'GARBAGE'}, r'cannot start from .*garbage\.pt: .*pass a checkpoint'),
    ({'init_from': 'LIST'}, r'cannot start from .*list\.pt: .*pass a checkpoint'),
    ({'schedule': 'cosine'}, "unknown schedule 'cosine'; valid: one-cycle, constant"),
    ({'average_from': 3}, r'average from epoch 3 needs to be in 0\.\.2'),
])
def test_bad_start_schedule_and_averaging_settings_are_refused(run, data, tmp_path,
                                                               settings, message):
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint')
    torch.save([1, 2], tmp_path / 'list.pt')
    paths = {'RUN': str(run / 'last.pt'), 'MISSING': str(tmp_path / 'missing.pt'),
             'GARBAGE': str(tmp_path / 'garbage.pt'), 'LIST': str(tmp_path / 'list.pt')}
    settings = {name: paths.get(value, value) for name, value in settings.items()}
    config = TrainConfig(data=str(data), output=str(tmp_path / 'run'),
                         **{**CONSTANT_RUN, 'epochs': 2, **settings})
    with pytest.raises(ConfigError, match=message):
        train(config)
    assert not (tmp_path / 'run' / 'last.pt').exists()


@pytest.fixture(scope='module')
def averages(run, data, tmp_path_factory) -> list[Path]:
    """Average two runs that continue ``run`` in other data orders: 2 and 1 snapshots."""
    folder = tmp_path_factory.mktemp('averages')
    for seed, epochs in ((4, 2), (5, 1)):
        train(TrainConfig(data=str(data), output=str(folder / f'seed{seed}'), epochs=epochs,
                          average_from=1, init_from=str(run / 'last.pt'),
                          **{**CONSTANT_RUN, 'seed': seed}))
    return [folder / 'seed4' / 'averaged.pt', folder / 'seed5' / 'averaged.pt']


def test_pooled_averages_are_the_mean_of_all_their_snapshots(averages, tmp_path, capsys):
    assert seg_tool(['pool-averages', *map(str, averages), '--output', str(tmp_path),
                     '--threads', '2']) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f'pooled 3 snapshots of 2 runs; wrote {tmp_path / "averaged.pt"}')
    two, one = (_parameters(path) for path in averages)
    pooled = _parameters(tmp_path / 'averaged.pt')
    assert pooled.keys() == two.keys()
    for name, value in pooled.items():
        torch.testing.assert_close(value, (2 * two[name] + one[name]) / 3)
    assert two['head.bias'].tolist() != pytest.approx(one['head.bias'].tolist())
    stored = torch.load(tmp_path / 'averaged.pt', weights_only=False)
    assert stored['averaged_count'] == 3
    assert stored['pooled_from'] == [str(path) for path in averages]
    assert stored['config'] == torch.load(averages[0], weights_only=False)['config']
    # batch norm re-measured for the pooled weights: one pass of one batch (3 frames // 2)
    source = torch.load(averages[0], weights_only=False)['model']
    means = [name for name in stored['model'] if name.endswith('running_mean')]
    assert {stored['model'][name.replace('running_mean', 'num_batches_tracked')].item()
            for name in means} == {1}
    assert any(not torch.equal(stored['model'][name], source[name]) for name in means)


@pytest.mark.parametrize(('other', 'message'), [
    ('UNRELATED', r'cannot pool .*averaged\.pt with .*: they continued None and .*last\.pt; '
                  'only averages of runs started from the same trained network'),
    ('RENORMALISED', r'cannot pool .*renormalised\.pt with .*averaged\.pt: their architecture, '
                     'classes or input normalisation differ'),
    ('LAST', r'last\.pt is the training state of an averaging run.*pass the averaged\.pt'),
    ('PLAIN', r'last\.pt is not a weight average \(it lacks averaged_count\)'),
    ('GARBAGE', r'cannot read .*garbage\.pt: .*pass averaged\.pt checkpoints'),
    ('SAME', r'seed4/averaged\.pt is given more than once; pass each run\'s averaged\.pt once'),
    (None, 'pooling needs at least two averaged.pt checkpoints'),
])
def test_pooling_refuses_what_is_not_an_average_of_the_same_start(
        averages, run, data, tmp_path, capsys, other, message):
    if other == 'UNRELATED':
        train(TrainConfig(data=str(data), output=str(tmp_path / 'fresh'), epochs=1,
                          average_from=1, **CONSTANT_RUN))
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint')
    renormalised = torch.load(averages[1], weights_only=False)
    renormalised['config']['mean'] = [0.5, 0.5, 0.5]
    torch.save(renormalised, tmp_path / 'renormalised.pt')
    paths = {'UNRELATED': tmp_path / 'fresh' / 'averaged.pt',
             'LAST': averages[0].parent / 'last.pt', 'PLAIN': run / 'last.pt',
             'GARBAGE': tmp_path / 'garbage.pt', 'RENORMALISED': tmp_path / 'renormalised.pt',
             'SAME': averages[0]}
    checkpoints = [averages[0]] + ([paths[other]] if other else [])
    assert seg_tool(['pool-averages', *map(str, checkpoints),
                     '--output', str(tmp_path / 'pooled')]) == 1
    error = capsys.readouterr().err
    assert error.startswith('seg_tool: error: ') and error.count('\n') == 1
    assert re.search(message, error)
    assert not (tmp_path / 'pooled' / 'averaged.pt').exists()
