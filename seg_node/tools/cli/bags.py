"""``seg_tool`` bag commands: make-bag, eval-bag and score-live (thin wrappers).

The work lives in seg_node.evaluation.bags (no rclpy) and seg_node.tools.live (rclpy); both
are imported inside the command that needs them.
"""

import argparse
from pathlib import Path

from seg_node import CAMERA_TOPIC
from seg_node.core.classes import DEFAULT_CLASSES_PATH
from seg_node.tools.cli.common import add_model_arguments, add_topic_arguments, write_json


def cmd_make_bag(args: argparse.Namespace) -> int:
    """Write a labelled image sequence as one evaluation rosbag2 or several drives."""
    from seg_node.evaluation.bags import make_drives
    drives = make_drives(args.data, args.output, args.drives, tuple(args.storage.split(',')),
                         args.split, args.rate, args.limit, args.encoding, args.compressed)
    for path, frames in drives:
        print(f'wrote {frames} frames to {path}')
    return 0


def cmd_eval_bag(args: argparse.Namespace) -> int:
    """Score the node's inference path on a recorded bag."""
    from seg_node.evaluation.bags import evaluate_bag
    from seg_node.core.pipeline import load_segmenter
    segmenter, classes = load_segmenter(args.model, args.classes, args.backend, args.threads,
                                        args.inference_size and tuple(args.inference_size))
    evaluation = evaluate_bag(args.bag, segmenter, classes, args.image_topic, args.label_topic,
                              args.output_bag, args.output_storage, args.debayer)
    text, payload = evaluation.report(classes)
    print(text)
    if args.output_bag:
        print(f'wrote {args.output_bag}')
    if args.json:
        write_json(args.json, payload)
    return 0


def cmd_score_live(args: argparse.Namespace) -> int:
    """Score the running node's labels against ground truth under real transport."""
    from seg_node.evaluation.bags import report
    from seg_node.core.classes import load_classes
    from seg_node.tools.live import score_live
    classes = load_classes(args.classes)
    scores = score_live(classes, args.label_topic, args.image_topic, args.labels_topic,
                        args.play, args.timeout)
    text, payload = report(scores.pairing.matrix, classes, scores.counts(),
                           scores.latencies_s, 'end-to-end latency')
    print(text)
    if args.json:
        write_json(args.json, payload)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the make-bag, eval-bag and score-live subcommands to seg_tool.

    Choices are checked by seg_node.evaluation.bags (its errors list them), so building the
    parser does not import rosbags or cv2.
    """
    make = commands.add_parser('make-bag', help='labelled image sequence -> evaluation bag')
    make.add_argument('data', type=Path, help='CamVid-format folder or split file')
    make.add_argument('output', type=Path, help='new rosbag2 folder')
    make.add_argument('--split', default='val', help='split name when DATA is a folder')
    make.add_argument('--rate', type=float, default=10.0, help='frames per second')
    make.add_argument('--limit', type=int, help='at most this many frames (name order)')
    make.add_argument('--storage', default='sqlite3',
                      help='sqlite3 | mcap, or a comma list given to the drives in turn '
                      '(sqlite3,mcap: odd drives sqlite3, even ones mcap)')
    make.add_argument('--drives', type=int, default=1,
                      help='cut the frames into this many consecutive bags, OUTPUT/drive_01, '
                      '... (stamps run on as in one recording)')
    camera = make.add_mutually_exclusive_group()
    camera.add_argument('--encoding', default='rgb8',
                        help=f'raw Image encoding on {CAMERA_TOPIC} (any the node accepts)')
    camera.add_argument('--compressed', metavar='FORMAT',
                        help=f'jpeg | png: CompressedImage on {CAMERA_TOPIC}/compressed instead')
    make.set_defaults(func=cmd_make_bag)

    evaluate = commands.add_parser('eval-bag', help='score the model on a recorded bag')
    evaluate.add_argument('bag', type=Path, help='rosbag2 folder (sqlite3, mcap) or ROS 1 .bag')
    add_topic_arguments(evaluate, label_required=False)
    evaluate.add_argument('--output-bag', type=Path,
                          help='new rosbag2 with the camera topic and /seg_node/{labels,'
                          'confidence,color}')
    evaluate.add_argument('--output-storage', default='sqlite3', help='sqlite3 | mcap')
    evaluate.add_argument('--json', help='write the scores as JSON to this file (- : stdout)')
    add_model_arguments(evaluate, 'CPU threads; 0: all cores')
    evaluate.set_defaults(func=cmd_eval_bag)

    live = commands.add_parser('score-live', help="score the running node's labels")
    live.add_argument('--label-topic', required=True, help='mono8 ground-truth topic')
    live.add_argument('--image-topic', default=CAMERA_TOPIC,
                      help='camera topic the node subscribes (counted, or played)')
    live.add_argument('--labels-topic', default='/seg_node/labels', help="the node's ~/labels")
    live.add_argument('--play', type=Path,
                      help="publish this bag's image and label topics at the recorded rate")
    live.add_argument('--timeout', type=float, default=10.0,
                      help='stop after this many seconds without a message')
    live.add_argument('--classes', type=Path, default=DEFAULT_CLASSES_PATH)
    live.add_argument('--json', help='write the scores as JSON to this file (- : stdout)')
    live.set_defaults(func=cmd_score_live)
