"""bench: the machine description that every benchmark's JSON carries."""

import platform

from seg_node.tools.bench import cpu_name, machine


def test_cpu_is_named_by_its_model_not_its_architecture(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: GenuineIntel\n'
                       'model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n')
    assert cpu_name(cpuinfo) == 'Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz'
    assert cpu_name(tmp_path / 'absent') == (platform.processor() or platform.machine())
    assert machine()['cpu'] == cpu_name() and machine()['cores'] >= 1
