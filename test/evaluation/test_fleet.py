"""eval-fleet on a local 2-CPU Ray over small sqlite3 and mcap bags of the CamVid fixtures."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CAMVID_FIXTURES
from seg_node.core.classes import load_classes
from seg_node.evaluation.bags import CAMERA_TOPIC, GROUND_TRUTH_TOPIC, make_bag, make_drives
from seg_node.evaluation.fleet import evaluate_fleet, FleetSettings, worst_stamps
from seg_node.evaluation.metrics import ConfusionMatrix
from seg_node.tools.cli.main import main

ray = pytest.importorskip('ray')
pytest.importorskip('matplotlib')

START_NS = 1_700_000_000 * 10**9
TOPICS = ['--image-topic', CAMERA_TOPIC, '--label-topic', GROUND_TRUTH_TOPIC]
CLASSES = load_classes()


@pytest.fixture(scope='session')
def local_ray():
    """One local Ray of 2 CPUs for every fleet test (start-up costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope='module')
def drives(tmp_path_factory) -> list[Path]:
    """Four good bags, sqlite3 and mcap mixed (2, 1, 2 and 1 frames)."""
    folder = tmp_path_factory.mktemp('drives')
    first = make_drives(CAMVID_FIXTURES, folder / 'morning', 2, ('sqlite3', 'mcap'), rate=2,
                        start_ns=START_NS)
    second = make_drives(CAMVID_FIXTURES, folder / 'evening', 2, ('mcap', 'sqlite3'), rate=2,
                         start_ns=START_NS + 3600 * 10**9)
    return [path for path, _ in first + second]


@pytest.fixture(scope='module')
def damaged(tmp_path_factory) -> Path:
    """Write an mcap bag of the three fixture frames, then overwrite most of its file."""
    bag = tmp_path_factory.mktemp('damaged') / 'drive'
    make_bag(CAMVID_FIXTURES, bag, storage='mcap', start_ns=START_NS)
    data = next(bag.glob('*.mcap'))
    raw = bytearray(data.read_bytes())
    raw[4096:-4096] = b'\x5a' * (len(raw) - 8192)
    data.write_bytes(bytes(raw))
    return bag


@pytest.fixture(scope='module')
def fleet_run(local_ray, drives, damaged, tiny_model, tmp_path_factory) -> dict:
    """Run `seg_tool eval-fleet --manifest` over the drives, a damaged and a missing bag."""
    folder = tmp_path_factory.mktemp('fleet')
    manifest = folder / 'bags.txt'
    paths = [*drives[:2], damaged, folder / 'no_such_bag', *drives[2:]]
    manifest.write_text('# drives of the fixture frames\n' + '\n'.join(
        str(Path('..') / path.relative_to(folder.parent)) for path in paths) + '\n')
    output = folder / 'fleet.json'
    status = main(['eval-fleet', '--manifest', str(manifest), *TOPICS, '--workers', '2',
                   '--model', str(tiny_model), '--json', str(output),
                   '--report', str(folder / 'report')])
    return {'status': status, 'payload': json.loads(output.read_text()), 'output': output,
            'report': folder / 'report', 'bags': [str(manifest.parent / '..' / path.relative_to(
                folder.parent)) for path in paths]}


def eval_bag(bag: str, model: Path, folder: Path) -> dict:
    output = folder / f'{Path(bag).name}-{Path(bag).parent.name}.json'
    assert main(['eval-bag', bag, *TOPICS, '--model', str(model), '--json', str(output)]) == 0
    return json.loads(output.read_text())


def test_each_bag_scores_as_eval_bag_and_the_fleet_is_their_sum(
        fleet_run, tiny_model, tmp_path):
    payload = fleet_run['payload']
    assert fleet_run['status'] == 1  # some bags failed
    assert [entry['bag'] for entry in payload['bags']] == fleet_run['bags']
    scored = [entry for entry in payload['bags'] if 'error' not in entry]
    assert len(scored) == 4
    for entry in scored:
        alone = eval_bag(entry['bag'], tiny_model, tmp_path)
        for field in alone.keys() - {'latency_ms'}:
            assert entry[field] == alone[field], (entry['bag'], field)
        assert len(entry['frame_miou']) == entry['frames']
        assert len(entry['latency_samples_ms']) == entry['camera_frames']
    total = np.sum([entry['confusion_matrix'] for entry in scored], axis=0)
    np.testing.assert_array_equal(payload['confusion_matrix'], total)
    matrix = ConfusionMatrix(CLASSES.num_classes)
    matrix.matrix += total
    assert payload['miou'] == round(matrix.scores().miou, 6)
    assert payload['frames'] == payload['camera_frames'] == 6
    assert payload['run']['camera_frames'] == 6 and payload['run']['workers'] == 2
    assert payload['run']['frames_per_second'] > 0
    assert eval_bag(str(fleet_run['bags'][0]), tiny_model, tmp_path).keys() <= payload.keys()


def test_a_damaged_or_missing_bag_is_reported_and_the_others_complete(fleet_run):
    errors = {Path(entry['bag']).name: entry['error'] for entry in fleet_run['payload']['bags']
              if 'error' in entry}
    assert errors.keys() == {'drive', 'no_such_bag'}
    assert 'is damaged' in errors['drive'] and 'Chunk checksum mismatch' in errors['drive']
    assert 'does not exist' in errors['no_such_bag']


def test_report_page_shows_existing_figures(fleet_run):
    page = (fleet_run['report'] / 'index.html').read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert {'class_iou.png', 'confusion.png', 'bag_miou.png', 'worst_01.png',
            'bag_001_iou.png', 'bag_004_iou.png'} <= set(sources)
    for source in sources:
        assert (fleet_run['report'] / source).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'Chunk checksum mismatch' in page and 'no_such_bag' in page
    assert f'{fleet_run["payload"]["miou"]:.3f}' in page


def test_rerun_scores_only_bags_missing_for_this_model(fleet_run, tiny_model, tmp_path):
    output = tmp_path / 'fleet.json'
    previous = json.loads(fleet_run['output'].read_text())
    changed = previous['bags'][-1]
    changed['model_sha256'] = '0' * 64  # as if scored by another model
    output.write_text(json.dumps(previous))
    settings = FleetSettings(CAMERA_TOPIC, GROUND_TRUTH_TOPIC, tiny_model)
    result = evaluate_fleet(fleet_run['bags'], settings, workers=2, output=output,
                            worst_frames=2)
    run = result.payload['run']
    assert run['bags_resumed'] == 3  # the two failed bags and the changed one are retried
    assert run['camera_frames'] == changed['camera_frames']
    kept = {entry['bag']: entry for entry in previous['bags'] if 'error' not in entry}
    for entry in result.payload['bags']:
        if entry['bag'] in kept and entry['bag'] != changed['bag']:
            assert entry == kept[entry['bag']]
    assert result.payload['confusion_matrix'] == previous['confusion_matrix']
    assert json.loads(output.read_text()) == result.payload
    # the worst frames are read again and segmented as they were scored
    worst = result.worst_frames
    assert len(worst) == 2 and worst[0].miou <= worst[1].miou
    for frame in worst:
        matrix = ConfusionMatrix(CLASSES.num_classes)
        matrix.update(frame.truth, frame.prediction)
        assert round(matrix.scores().miou, 6) == frame.miou
        assert [frame.stamp, frame.miou] in next(entry['frame_miou'] for entry in
                                                 result.payload['bags']
                                                 if entry['bag'] == frame.bag)


def test_worst_frames_skip_the_same_scene_of_a_bag():
    second = 10**9
    entries = [{'bag': 'a', 'frame_miou': [[0, 0.1], [second, 0.2], [3 * second, 0.5],
                                           [4 * second, None]]},
               {'bag': 'b', 'frame_miou': [[0, 0.3]]},
               {'bag': 'c', 'error': 'unreadable'}]
    assert worst_stamps(entries, 3) == {'a': [(0, 0.1), (3 * second, 0.5)], 'b': [(0, 0.3)]}
    assert worst_stamps(entries, 1) == {'a': [(0, 0.1)]}


def test_serving_code_imports_neither_ray_nor_matplotlib():
    code = ('import sys, seg_node.core.pipeline, seg_node.ros.node, seg_node.evaluation.bags, '
            'seg_node.tools.cli.main; '
            'print(sorted({"ray", "matplotlib"} & {m.split(".")[0] for m in sys.modules}))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == '[]'
