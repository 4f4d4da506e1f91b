"""``seg_tool eval-fleet``: eval-bag over many bags on Ray, with an HTML report (thin wrapper).

The work lives in seg_node.evaluation.fleet (Ray) and seg_node.evaluation.report
(matplotlib); both are imported inside the command, so seg_tool runs without the
``seg_node[fleet]`` extra until eval-fleet is used.
"""

import argparse
from pathlib import Path

from seg_node.tools.cli.common import add_model_arguments, add_topic_arguments

WORST_FRAMES = 8  # frames shown in the report


def cmd_eval_fleet(args: argparse.Namespace) -> int:
    """Score a model on every bag with Ray workers; exit 1 if any bag failed."""
    from seg_node.evaluation.fleet import evaluate_fleet, FleetSettings, read_manifest
    bags = [str(bag) for bag in args.bags] + (read_manifest(args.manifest)
                                              if args.manifest else [])
    settings = FleetSettings(args.image_topic, args.label_topic, args.model, args.classes,
                             args.backend, args.inference_size and tuple(args.inference_size),
                             args.debayer)
    result = evaluate_fleet(bags, settings, args.workers, args.threads, args.address,
                            args.json, WORST_FRAMES if args.report else 0)
    print(result.text)
    if args.json:
        print(f'wrote {args.json}')
    if args.report:
        from seg_node.evaluation.report import write_report
        index = write_report(args.report, result.payload, result.classes, result.worst_frames)
        print(f'wrote {index}')
    return 1 if any('error' in entry for entry in result.payload['bags']) else 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add the eval-fleet subcommand to seg_tool."""
    fleet = commands.add_parser(
        'eval-fleet', help='score the model on many bags with Ray workers, with a report',
        description='Each bag is scored as eval-bag scores it (same decoding, model and '
                    'confusion matrix); the fleet total is their sum. Needs seg_node[fleet].')
    fleet.add_argument('bags', nargs='*', type=Path, metavar='BAG',
                       help='rosbag2 folders (sqlite3, mcap) or ROS 1 .bag files')
    fleet.add_argument('--manifest', type=Path,
                       help='text file of bag paths, one a line, relative to its folder '
                       '(# comments)')
    add_topic_arguments(fleet, label_required=True)
    fleet.add_argument('--workers', type=int, default=0,
                       help='Ray workers, one model each (default: one per CPU of the local '
                       'machine or the cluster)')
    fleet.add_argument('--address', help='join this Ray cluster (HOST:6379 of `ray start '
                       '--head`; the bags and the model must be readable on every node); '
                       'default: start a local Ray')
    fleet.add_argument('--json', type=Path,
                       help='write the scores here; run again with the same file to score '
                       'only the bags it lacks for this model')
    fleet.add_argument('--report', type=Path,
                       help='folder for index.html with figures and the worst frames')
    add_model_arguments(fleet, 'CPU threads per worker; 0: CPUs / workers')
    fleet.set_defaults(func=cmd_eval_fleet)
