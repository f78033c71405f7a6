"""``kdlib score``: score a GeoChat-Bench answer file and print its metrics.

The work is :func:`kdlib.evaluate.score.score_file` (its module docstring lists the metrics per
task); this module parses the arguments and prints a table or JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from kdlib.data.geochat_bench import TASKS
from kdlib.evaluate.grounding import DEFAULT_IMAGE_SIZES
from kdlib.evaluate.score import format_table, rounded, score_file


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="score a GeoChat-Bench answer file (OA/AA, VQA, acc@0.5, ROUGE/METEOR)",
                       description="Score a GeoChat-Bench answer file (JSON Lines with the benchmark's ground "
                       "truth and the model's answer per line) and print the metrics.")
    p.add_argument("task", choices=TASKS, help="which benchmark task the file holds")
    p.add_argument("file", type=Path, help="answer file (.jsonl)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="referring: one square image size in pixels for every record "
                   f"(default: per dataset {DEFAULT_IMAGE_SIZES}, an inference)")
    p.add_argument("--image-dir", type=Path, default=None, metavar="DIR",
                   help="referring: read each image's size from DIR/<image_id>.png")
    p.add_argument("--json", action="store_true", help="print one JSON object (percent, 2 decimals)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed lines (listed on stderr) instead of stopping")
    p.add_argument("--synonyms", action="store_true",
                   help="classification: also score with the built-in synonym map (reported apart)")
    p.add_argument("--against", type=Path, default=None, metavar="FILE_A",
                   help="classification, vqa: also compare FILE with FILE_A (another model's answers to the "
                   "same items) item by item: FILE - FILE_A in points with its paired 95%% interval")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.image_size is not None and args.image_size <= 0:
        raise ValueError(f"--image-size must be positive, got {args.image_size}")
    result = score_file(args.task, args.file, image_size=args.image_size, image_dir=args.image_dir,
                        skip_bad=args.skip_bad, synonyms=args.synonyms)
    if args.against is not None:
        from kdlib.evaluate.paired import compare_files  # scipy loads only when asked

        paired = compare_files(args.task, args.against, args.file)
        result["paired"] = {"against": str(args.against), **asdict(paired), "verdict": paired.verdict}
    print(json.dumps(rounded(result)) if args.json else format_table(args.task, result))
    if args.against is not None and not args.json:
        b, a = _names(args.file, args.against)
        verdict = {"B above A": f"{b} above", "B below A": f"{b} below"}.get(paired.verdict, paired.verdict)
        print(f"\n{args.file} - {args.against}: {paired.diff:+.2f} +- {paired.half_width:.2f} points "
              f"(paired 95% interval over {paired.n} items; right only in {b}: {paired.only_b}, "
              f"only in {a}: {paired.only_a}): {verdict}")
    return 0


def _names(file: Path, against: Path) -> tuple[str, str]:
    """How the sentence names the two files: their names, or the paths as given when the names are equal
    (two models' answers to one task usually share the task's file name)."""
    return (file.name, against.name) if file.name != against.name else (str(file), str(against))
