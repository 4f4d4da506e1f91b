"""Helpers shared by the ``seg_tool`` command modules."""

import json
from pathlib import Path

# CamVid-format data set used by commands that take --data (train, evaluate, quantize, ...).
DEFAULT_DATA = Path('../shared/datasets/camvid')


def write_json(path: str | None, payload: dict) -> None:
    """Print ``payload`` as JSON (``path`` None or '-') or write it to ``path``."""
    text = json.dumps(payload, indent=2)
    if path in (None, '-'):
        print(text)
    else:
        Path(path).write_text(text + '\n')
        print(f'wrote {path}')
