"""Large frames over real inter-process transport, with and without the shipped profile."""

import xml.etree.ElementTree as ElementTree

from seg_node import config_file, FASTDDS_PROFILE_NAME
from seg_node.tools.bench_transport import format_transport_table, run_in_process

NAMESPACE = {'dds': 'http://www.eprosima.com'}
FRAME_4K_RGB8 = 3840 * 2160 * 3


def test_profile_parses_and_its_segment_holds_several_4k_frames():
    root = ElementTree.parse(config_file(FASTDDS_PROFILE_NAME)).getroot()
    descriptors = {d.findtext('dds:transport_id', namespaces=NAMESPACE): d
                   for d in root.iterfind('.//dds:transport_descriptor', NAMESPACE)}
    types = {d.findtext('dds:type', namespaces=NAMESPACE) for d in descriptors.values()}
    assert types == {'SHM', 'UDPv4'}
    shm = next(d for d in descriptors.values()
               if d.findtext('dds:type', namespaces=NAMESPACE) == 'SHM')
    assert int(shm.findtext('dds:segment_size', namespaces=NAMESPACE)) >= 4 * FRAME_4K_RGB8
    participant = root.find('.//dds:participant', NAMESPACE)
    assert participant.get('is_default_profile') == 'true'
    assert participant.findtext('.//dds:useBuiltinTransports', namespaces=NAMESPACE) == 'false'
    used = {t.text for t in participant.iterfind('.//dds:transport_id', NAMESPACE)}
    assert used == set(descriptors)


def test_with_profile_reliable_4k_then_best_effort_vga_are_served(tiny_model):
    rows = run_in_process(tiny_model, [('reliable', 2160, 2880), ('best_effort', 480, 640)],
                          frames=3, rate=3.0, profile=str(config_file(FASTDDS_PROFILE_NAME)))
    assert [(r['camera'], r['size'], r['served']) for r in rows] == [
        ('reliable', '2880x2160', 3), ('best_effort', '640x480', 3)]
    table = format_transport_table({'results': [{'transport': 'shm', **r} for r in rows]})
    assert '| shm | reliable | 2880x2160 | 3/3 |' in table


def test_without_profile_reliable_4k_frames_are_still_served(tiny_model):
    rows = run_in_process(tiny_model, [('reliable', 2160, 2880)], frames=3, rate=3.0,
                          profile=None)
    assert rows[0]['served'] == 3
