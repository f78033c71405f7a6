"""``kdlib efficiency`` (Table 8: params and FLOPs) and ``kdlib convert-geochat`` (checkpoint converter)."""

from __future__ import annotations

import argparse
import json

from kdlib.commands.args import add_profile_args, profile_from_args
from kdlib.models.efficiency import DEFAULT_TEXT_LEN, efficiency, efficiency_table
from kdlib.models.geochat import convert_geochat


def add_parser(sub) -> None:
    eff = sub.add_parser("efficiency", help="parameters and FLOPs of teacher and student (Table 8)",
                         description="Count parameters and FLOPs (torch FlopCounterMode, 2 x MACs) of the "
                         "profile's teacher and student for one image + TEXT_LEN text tokens; the paper "
                         "profile is counted on the meta device from the published sizes (no weights).")
    add_profile_args(eff)
    eff.add_argument("--text-len", type=int, default=DEFAULT_TEXT_LEN,
                     help="text tokens after the image (default: %(default)s, reproduces the paper's FLOPs)")
    eff.add_argument("--json", action="store_true", help="print the full result as JSON")
    eff.set_defaults(func=run_efficiency)

    conv = sub.add_parser("convert-geochat", help="convert a GeoChat checkpoint to a Llava folder",
                          description="Convert a GeoChat checkpoint (original LLaVA layout: model.mm_projector, "
                          "model.vision_tower.vision_tower) into a folder LlavaForConditionalGeneration and "
                          "kdlib.models.load_mllm load with no missing or unexpected keys.")
    conv.add_argument("src", metavar="SRC", help="GeoChat checkpoint folder or hub id (e.g. MBZUAI/geochat-7B)")
    conv.add_argument("dst", metavar="DST", help="output folder (written atomically)")
    conv.add_argument("--vision-tower", metavar="ID_OR_PATH", default=None,
                      help="CLIP tower to use instead of the checkpoint's tower / config mm_vision_tower")
    conv.add_argument("--image-size", type=int, default=504, help="input side in pixels (default: %(default)s)")
    conv.add_argument("--dtype", choices=("auto", "float32", "float16"), default="auto",
                      help="weights dtype; auto keeps float16/float32 and widens bfloat16 (default: %(default)s)")
    conv.set_defaults(func=run_convert)


def run_efficiency(args: argparse.Namespace) -> int:
    result = efficiency(profile_from_args(args), text_len=args.text_len)
    print(json.dumps(result, indent=2) if args.json else efficiency_table(result))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    out = convert_geochat(args.src, args.dst, vision_tower=args.vision_tower, image_size=args.image_size,
                          dtype=args.dtype)
    print(f"wrote {out}")
    return 0
