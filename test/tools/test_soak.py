"""`seg_tool soak` over a real seg_node process, for a few seconds."""

import json
import os

import pytest

from seg_node.core.errors import ConfigError
from seg_node.tools.cli.main import main
from seg_node.tools.soak import process_memory_mb, soak


def test_process_memory_reads_this_process():
    memory = process_memory_mb(os.getpid())
    assert 10 < memory['rss_mb'] <= memory['peak_rss_mb']


def test_short_soak_reports_every_period(tiny_model, tmp_path):
    output = tmp_path / 'soak.json'
    assert main(['soak', '--model', str(tiny_model), '--minutes', '0.05', '--rate', '6',
                 '--size', '120', '160', '--threads', '1', '--period', '1.4', '--limit', '3',
                 '--json', str(output)]) == 0
    result = json.loads(output.read_text())
    assert result['frames_sent'] == 18 and result['frame_size'] == [120, 160]
    periods = result['periods']
    assert [p['end_s'] for p in periods] == [1.4, 2.8, 3.0]
    assert [p['sent'] for p in periods] == [9, 17, 18]
    counters = result['node_counters']
    # a reliable keep-last-1 reader may overwrite a frame before the node takes it
    assert result['lost_before_the_node'] == 18 - counters['received'] <= 3
    assert counters['served'] + counters['dropped'] == counters['received']
    assert counters['rejected'] == 0
    assert 0 < result['frames_answered'] <= counters['served']
    assert periods[-1]['answered'] == result['frames_answered']
    assert 0 < result['latency_ms']['p50'] <= result['latency_ms']['p99']
    assert all(p['rss_mb'] > 0 for p in periods) and result['node_exit_status'] == 0
    assert result['peak_rss_mb'] >= result['end_rss_mb'] > 0


@pytest.mark.parametrize('minutes, rate', [(0, 5), (1, -1)])
def test_soak_refuses_non_positive_settings(tiny_model, minutes, rate):
    with pytest.raises(ConfigError, match='positive --minutes'):
        soak(tiny_model, minutes, rate, (120, 160))
