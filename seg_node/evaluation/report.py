"""eval-fleet's report: a folder with index.html and the PNG figures it shows.

The page needs nothing but its folder (inline style, no scripts, images by relative path).
Figures are drawn with matplotlib's object API on the Agg canvas (no display, no pyplot
state); label images use the class file's palette (seg_node.core.render).
"""

import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from seg_node.core.classes import ClassList
from seg_node.core.render import colorize
from seg_node.evaluation.fleet import SAME_SCENE_NS, WorstFrame

INDEX = 'index.html'
_WRONG_RGB = (255, 32, 32)  # error map: wrongly labelled pixels
_DIM = 0.35  # error map: brightness of the grey camera frame under the errors
_DPI = 100


def error_image(rgb: np.ndarray, truth: np.ndarray, prediction: np.ndarray,
                num_classes: int) -> np.ndarray:
    """Return the (H, W, 3) uint8 error map: wrong pixels red over the dimmed grey frame.

    Args:
        rgb: (H, W, 3) uint8 camera frame.
        truth: (H, W) uint8 ground truth; ids >= ``num_classes`` are void (not scored, so
            never red).
        prediction: (H, W) uint8 predicted ids.
        num_classes: K.

    """
    grey = (rgb.mean(axis=2) * _DIM).astype(np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    image[(truth < num_classes) & (prediction != truth)] = _WRONG_RGB
    return image


def short_name(bag: str) -> str:
    """Return the last two parts of a bag path, enough to tell drives apart on a figure."""
    return '/'.join(Path(bag).parts[-2:])


def _save(figure: Figure, path: Path) -> str:
    figure.savefig(path, dpi=_DPI, bbox_inches='tight')
    return path.name


def _legend_above(axes: object) -> None:
    axes.legend(loc='lower right', bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8,
                frameon=False)


def _palette(classes: ClassList) -> list[tuple[float, float, float]]:
    return [tuple(channel / 255 for channel in colour) for colour in classes.palette]


def class_iou_figure(payload: dict, classes: ClassList, path: Path) -> str:
    """Draw the fleet's per-class IoU as bars and each bag's as dots; return the file name."""
    names = list(classes.names)
    fleet = [payload['per_class_iou'][name] for name in names]
    rows = np.arange(len(names))
    figure = Figure(figsize=(8, 0.42 * len(names) + 1.2))
    axes = figure.add_subplot()
    axes.barh(rows, [np.nan if value is None else value for value in fleet],
              color=_palette(classes), edgecolor='black', label='fleet')
    scored = [entry for entry in payload['bags'] if 'error' not in entry]
    offsets = np.linspace(-0.25, 0.25, max(len(scored), 1)) if len(scored) > 1 else [0.0]
    for index, (offset, entry) in enumerate(zip(offsets, scored, strict=False)):
        values = [entry['per_class_iou'][name] for name in names]
        axes.scatter([np.nan if value is None else value for value in values], rows + offset,
                     s=14, facecolor='white', edgecolor='black', linewidth=0.8, zorder=3,
                     label='one bag' if index == 0 else None)
    for row, value in zip(rows, fleet, strict=True):
        axes.text(1.01, row, '-' if value is None else f'{value:.3f}', va='center',
                  fontsize=9)
    axes.set_yticks(rows, names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel('IoU')
    axes.set_title(f'Per-class IoU: fleet mIoU {_number(payload["miou"])}', loc='left')
    axes.grid(axis='x', alpha=0.3)
    _legend_above(axes)
    return _save(figure, path)


def confusion_figure(matrix: np.ndarray, classes: ClassList, path: Path) -> str:
    """Draw the (K, K) confusion matrix with each ground-truth row as fractions of its pixels."""
    counts = np.asarray(matrix, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        fractions = np.where(totals > 0, counts / totals, np.nan)
    size = len(classes.names)
    figure = Figure(figsize=(0.62 * size + 2.5, 0.55 * size + 1.8))
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap='Blues', vmin=0, vmax=1)
    for row in range(size):
        for column in range(size):
            value = fractions[row, column]
            if np.isfinite(value) and value >= 0.005:
                axes.text(column, row, f'{100 * value:.0f}', ha='center', va='center',
                          fontsize=8, color='white' if value > 0.5 else 'black')
    axes.set_xticks(range(size), classes.names, rotation=45, ha='right')
    axes.set_yticks(range(size), classes.names)
    axes.set_xlabel('predicted class')
    axes.set_ylabel('ground truth class')
    axes.set_title('Confusion matrix, % of each ground-truth row', loc='left')
    figure.colorbar(image, ax=axes, fraction=0.04)
    return _save(figure, path)


def bag_miou_figure(payload: dict, path: Path) -> str:
    """Draw each scored bag's mIoU, lowest first, with the fleet's as a line."""
    scored = sorted((entry for entry in payload['bags']
                     if 'error' not in entry and entry['miou'] is not None),
                    key=lambda entry: entry['miou'])
    figure = Figure(figsize=(8, 0.3 * len(scored) + 1.4))
    axes = figure.add_subplot()
    rows = np.arange(len(scored))
    axes.barh(rows, [entry['miou'] for entry in scored], color='#4c72b0')
    for row, entry in zip(rows, scored, strict=True):
        axes.text(1.01, row, f'{entry["miou"]:.3f} ({entry["frames"]} frames)', va='center',
                  fontsize=8)
    if payload['miou'] is not None:
        axes.axvline(payload['miou'], color='black', linestyle='--',
                     label=f'fleet {payload["miou"]:.3f}')
        _legend_above(axes)
    axes.set_yticks(rows, [short_name(entry['bag']) for entry in scored])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel('mIoU')
    axes.set_title('mIoU per bag, lowest first', loc='left')
    axes.grid(axis='x', alpha=0.3)
    return _save(figure, path)


def bag_iou_figure(entry: dict, classes: ClassList, path: Path) -> str:
    """Draw one bag's per-class IoU as small bars in the class colours."""
    values = [entry['per_class_iou'][name] for name in classes.names]
    figure = Figure(figsize=(4.2, 2.6))
    axes = figure.add_subplot()
    axes.bar(range(len(values)), [np.nan if value is None else value for value in values],
             color=_palette(classes), edgecolor='black', linewidth=0.5)
    axes.set_xticks(range(len(values)), classes.names, rotation=60, ha='right', fontsize=7)
    axes.set_ylim(0, 1)
    axes.tick_params(axis='y', labelsize=7)
    axes.set_title(f'{short_name(entry["bag"])}: mIoU {_number(entry["miou"])}', fontsize=9,
                   loc='left')
    axes.grid(axis='y', alpha=0.3)
    return _save(figure, path)


def frame_figure(frame: WorstFrame, classes: ClassList, path: Path) -> str:
    """Draw camera / ground truth / prediction / error map of one frame side by side."""
    lut = classes.color_lut()
    panels = (('camera', frame.rgb), ('ground truth', colorize(frame.truth, lut)),
              ('prediction', colorize(frame.prediction, lut)),
              ('errors (red)', error_image(frame.rgb, frame.truth, frame.prediction,
                                           classes.num_classes)))
    height, width = frame.rgb.shape[:2]
    figure = Figure(figsize=(4 * 3.2, 3.2 * height / width + 0.35))
    for index, (title, image) in enumerate(panels):
        axes = figure.add_subplot(1, 4, index + 1)
        axes.imshow(image, interpolation='nearest')
        axes.set_title(title, fontsize=10)
        axes.axis('off')
    figure.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.9, wspace=0.02)
    return _save(figure, path)


def _number(value: float | None, digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = ''.join(f'<th>{cell}</th>' for cell in header)
    body = ''.join('<tr>' + ''.join(f'<td>{cell}</td>' for cell in row) + '</tr>'
                   for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def _swatch(colour: tuple[int, int, int] | np.ndarray) -> str:
    red, green, blue = (int(channel) for channel in colour)
    return f'<span class="swatch" style="background: rgb({red},{green},{blue})"></span>'


_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.meta { color: #555; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #333;
          margin-right: 6px; vertical-align: middle; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.error { color: #a00; }
figure { margin: 12px 0; } figcaption { font-size: 13px; color: #444; }
img { max-width: 100%; }
"""


def write_report(folder: Path, payload: dict, classes: ClassList,
                 worst_frames: list[WorstFrame]) -> Path:
    """Write index.html and its figures into ``folder`` (created if missing).

    Args:
        folder: output folder.
        payload: eval-fleet's JSON (seg_node.evaluation.fleet.fleet_report).
        classes: the model's class list.
        worst_frames: frames to show, worst first.

    Returns:
        The path of index.html.

    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = payload['bags']
    scored = [entry for entry in entries if 'error' not in entry]
    failed = [entry for entry in entries if 'error' in entry]
    run, latency = payload['run'], payload['latency_ms']
    parts = [f'<h1>Fleet evaluation of {html.escape(Path(payload["model"]).name)}</h1>',
             f'<p class="meta">model {html.escape(payload["model"])} (sha256 '
             f'{payload["model_sha256"][:16]}…), camera {html.escape(payload["image_topic"])}, '
             f'ground truth {html.escape(payload["label_topic"])}; '
             f'{run["workers"]} workers × {run["threads_per_worker"]} threads on Ray '
             f'({html.escape(run["address"])})</p>',
             _table(['measure', 'value'], [
                 ['mIoU', _number(payload['miou'])],
                 ['pixel accuracy', _number(payload['pixel_accuracy'])],
                 ['mean class accuracy', _number(payload['mean_class_accuracy'])],
                 ['frames scored', str(payload['frames'])],
                 ['bags scored / failed', f'{len(scored)} / {len(failed)}'],
                 ['corrupt / skipped / unmatched-label frames',
                  f'{payload["corrupt"]} / {payload["skipped"]} / '
                  f'{payload["unmatched_labels"]}'],
                 ['inference latency p50 / p99 ms',
                  f'{_number(latency["p50"], 1)} / {_number(latency["p99"], 1)}'],
                 ['this run', f'{run["camera_frames"]} frames, {run["seconds"]} s, '
                  f'{run["frames_per_second"] or "-"} frames/s'
                  f' ({run["bags_resumed"]} bags kept from before)']])]
    if failed:
        parts.append('<h2>Failed bags</h2>' + _table(['bag', 'reason'], [
            [html.escape(entry['bag']), f'<span class="error">{html.escape(entry["error"])}'
             '</span>'] for entry in failed]))
    if scored:
        parts.append('<h2>Per-class IoU</h2>')
        parts.append(f'<img src="{class_iou_figure(payload, classes, folder / "class_iou.png")}"'
                     ' alt="per-class IoU of the fleet and of each bag">')
        parts.append(_table(['class', 'IoU', 'recall', 'precision'], [
            [_swatch(colour) + html.escape(name), _number(payload['per_class_iou'][name]),
             _number(payload['per_class_recall'][name]),
             _number(payload['per_class_precision'][name])]
            for name, colour in zip(classes.names, classes.palette, strict=True)]))
        parts.append('<h2>Confusion matrix</h2>')
        matrix_png = confusion_figure(payload['confusion_matrix'], classes,
                                      folder / 'confusion.png')
        parts.append(f'<img src="{matrix_png}" alt="row-normalised confusion matrix">')
        parts.append('<h2>mIoU per bag</h2>')
        parts.append(f'<img src="{bag_miou_figure(payload, folder / "bag_miou.png")}" '
                     'alt="mIoU of each bag">')
        parts.append(_table(
            ['bag', 'frames', 'mIoU', 'pixel accuracy', 'corrupt', 'skipped', 'seconds'],
            [[html.escape(entry['bag']), str(entry['frames']), _number(entry['miou']),
              _number(entry['pixel_accuracy']), str(entry['corrupt']), str(entry['skipped']),
              str(entry['seconds'])] for entry in scored]))
    if worst_frames:
        parts.append('<h2>Worst frames (lowest frame mIoU)</h2><p class="meta">'
                     f'At most one frame per {SAME_SCENE_NS / 1e9:.0f} s of a bag. '
                     + ' '.join(_swatch(colour) + html.escape(name) for name, colour in
                                zip(classes.names, classes.palette, strict=True))
                     + f' {_swatch((0, 0, 0))}void</p>')
        for index, frame in enumerate(worst_frames, 1):
            name = frame_figure(frame, classes, folder / f'worst_{index:02d}.png')
            parts.append(f'<figure><img src="{name}" alt="worst frame {index}"><figcaption>'
                         f'{index}. {html.escape(frame.bag)}, stamp {frame.stamp / 1e9:.3f} s:'
                         f' frame mIoU {frame.miou:.3f}</figcaption></figure>')
    if scored:
        parts.append('<h2>Per-class IoU of each bag</h2><div class="grid">')
        for index, entry in enumerate(scored, 1):
            name = bag_iou_figure(entry, classes, folder / f'bag_{index:03d}_iou.png')
            parts.append(f'<img src="{name}" alt="per-class IoU of '
                         f'{html.escape(entry["bag"])}">')
        parts.append('</div>')
    index_path = folder / INDEX
    index_path.write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                          f'<title>Fleet evaluation</title><style>{_STYLE}</style></head>'
                          '<body>\n' + '\n'.join(parts) + '\n</body></html>\n')
    return index_path
