"""The development backend: a checkpoint it cannot read is refused in one line, with the fix."""

import pytest
import torch

from seg_node.core.errors import ModelLoadError
from seg_node.models.torch_backend import load_checkpoint


@pytest.mark.parametrize('content', [None, b'', b'not a checkpoint', 'LIST'])
def test_a_missing_truncated_or_foreign_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / 'model.pt'
    if content == 'LIST':
        torch.save([1, 2], path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=r'^cannot load checkpoint .*model\.pt: .*; pass a '
                                             'file written by `seg_tool train`$'):
        load_checkpoint(path)
