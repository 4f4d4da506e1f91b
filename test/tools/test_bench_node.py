"""seg_tool bench-node: the near-free contract model and a real two-camera row."""

import numpy as np
import pytest

from seg_node.core.errors import ConfigError
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.core.stage_times import STAGES
from seg_node.tools.bench_node import (_summarise, bench_node, build_null_model,
                                       format_node_table, Row)


def test_rows_parse_and_bad_rows_say_the_format():
    assert Row.parse('4x640x480@30') == Row(4, 640, 480, 30.0)
    for bad in ('640x480@30', '1x640x480', '0x640x480@30', '1x640x480@0'):
        with pytest.raises(ConfigError, match='bench-node row'):
            Row.parse(bad)


def test_each_camera_latency_starts_at_its_own_publish_and_wrong_sizes_are_not_served():
    row = Row(2, 40, 30, 10.0)
    sent = [[0.0, 0.1, 0.2], [0.004, 0.104, 0.204]]  # frame 0 is the warm-up
    received = [{1: (0.110, (30, 40)), 2: (0.210, (30, 40))},
                {1: (0.124, (30, 40)), 2: (0.224, (29, 40))}]
    result = _summarise(row, ['cam0', 'cam1'], 1, sent, received, 0.003, {}, 0)
    assert result['offered'] == 4 and result['served'] == 3
    assert result['served_per_camera'] == {'cam0': 2, 'cam1': 1}
    assert result['e2e_ms'] == {'p50': 10.0, 'p99': 19.8, 'mean': 13.333}
    assert result['node_cpu_ms_per_frame'] == 1.0


def test_null_model_follows_the_contract_at_the_cost_of_a_cast_and_a_div(tmp_path):
    backend = OnnxRuntimeBackend(build_null_model(tmp_path / 'null.onnx'), num_threads=1)
    assert backend.info.inference_size == (360, 480) and backend.info.num_classes == 11
    assert backend.info.class_names[3] == 'road' and backend.info.arch == 'null'
    images = np.zeros((2, 4, 6, 3), np.uint8)
    images[0, ..., 0], images[1, ..., 0] = 255, 51
    result = backend.infer_batch(images, probabilities=True)
    assert result.labels.dtype == np.uint8 and result.labels.shape == (2, 4, 6)
    assert result.labels[0].max() < 11
    np.testing.assert_array_equal(result.labels[:, 0, 0], [9, 1])  # R / 25.6, truncated
    np.testing.assert_allclose(result.confidence[:, 0, 0], [1.0, 0.2], rtol=1e-6)
    assert result.probabilities.shape == (2, 11, 4, 6)
    np.testing.assert_allclose(result.probabilities[1, 7], 0.2, rtol=1e-6)


def test_two_cameras_in_one_node_process_are_all_served_and_broken_down(tmp_path):
    result = bench_node([Row(2, 64, 48, 20.0)], seconds=1.0, work_dir=tmp_path)
    row = result['results'][0]
    # counts, not timings: a loaded host drops some frames (newest wins), never serves extra
    assert row['offered'] == 40 and 0 < row['served'] <= 40
    per_camera = row['served_per_camera']
    assert set(per_camera) == {'cam0', 'cam1'} and sum(per_camera.values()) == row['served']
    assert min(per_camera.values()) > 0
    mean = row['served'] / 2
    assert row['max_camera_deviation_from_mean'] == round(
        max(abs(count - mean) for count in per_camera.values()) / mean, 4)
    assert row['node_exit_status'] == 0
    assert 0 < row['e2e_ms']['p50'] <= row['e2e_ms']['p99']
    assert row['node_cpu_ms_per_frame'] > 0
    assert set(row['stages_ms_per_frame']) == set(STAGES)
    assert all(ms >= 0 for ms in row['stages_ms_per_frame'].values())
    # the bare relay ran first in the node's place: it answers frames, reports no stages
    floor = row['transport_floor']
    assert 0 < floor['served'] <= 40 and 0 < floor['e2e_ms']['p50'] <= floor['e2e_ms']['p99']
    assert row['e2e_p50_over_floor_ms'] == round(row['e2e_ms']['p50'] - floor['e2e_ms']['p50'],
                                                 3)
    assert (f"| 2 | 64x48 | 20 Hz | {row['served']}/40 | {row['e2e_ms']['p50']:.1f} | "
            f"{row['e2e_ms']['p99']:.1f} | {floor['e2e_ms']['p50']:.1f} |"
            in format_node_table(result))


def test_relay_answers_each_camera_frame_with_labels_of_its_size_and_header(tmp_path):
    result = bench_node([Row(1, 50, 30, 20.0)], seconds=1.0, work_dir=tmp_path)
    floor = result['results'][0]['transport_floor']
    # the rig counts an answer only with the frame's stamp and the frame's size
    assert floor['served'] >= 10 and floor['node_cpu_ms_per_frame'] > 0
    no_floor = bench_node([Row(1, 50, 30, 20.0)], seconds=0.5, work_dir=tmp_path, floor=False)
    assert 'transport_floor' not in no_floor['results'][0]
    assert '| - |' in format_node_table(no_floor)
