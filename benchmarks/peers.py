"""kdlib's distillation step beside Hugging Face TRL's ``MiniLLMTrainer`` and ``GKDTrainer``, same pair, same work.

The pair: SmolLM2-135M-Instruct (``$KDLIB_MODEL_ROOT``, as the ``small`` profile) teaches the same
model with every other decoder layer kept (15 of 30, :func:`kdlib.models.drop_layers`, saved with
``save_pretrained`` once and read by every case). The data: UCM-captions training images, one
text prompt per image naming its scene class, with one of its captions as the reference response
(:func:`caption_pairs`). Every case runs in a fresh process with the same batch, new tokens,
precision (``bf16``: float32 weights under bf16 autocast, TRL's default; ``fp32``; ``auto`` picks bf16
where the processor has bf16 instructions, since emulated bf16 is many times slower) and thread count:

=================  ===================================================================================
``kdlib-paper``    kdlib's full ``paper`` step (text-only, so no projector term): teacher-mixed
                   sampling (alpha 0.2), single-step reverse KL, long-term PPO term, LM term on
                   the reference captions (``D_PT``, a second batch of 8 TRL does not train on)
``kdlib-rkl``      the reverse-KL-only configuration: teacher-mixed sampling + single-step term
``kdlib-gkd``      the GKD-equivalent configuration: on-policy student samples (alpha 0) and the
                   generalized JSD (beta 0.5) on every step (TRL's GKD samples on half the steps)
``trl-minillm``    TRL ``MiniLLMTrainer`` (``benchmarks/peer_trl.py``, run by ``--trl-python``)
``trl-gkd``        TRL ``GKDTrainer`` (same)
=================  ===================================================================================

Columns, over the timed steps (the first ``--warmup`` are left out): median seconds per step;
generated tokens/s (response tokens sampled, EOS included); trained tokens/s (completion tokens
in the distillation loss; kdlib's ``D_PT`` tokens are not counted); peak resident set of the
process (``ru_maxrss``); and kdlib/TRL, the ratio of trained tokens/s to the TRL trainer of the
same family (MiniLLM for ``paper`` and ``rkl``, GKD for ``gkd``) and of peak memory.

TRL lives in its own virtual environment (``pip install kdlib[bench]`` there, or
``pip install torch==2.13.0 trl==1.14.2 peft``): pass its interpreter with ``--trl-python`` or
``$KDLIB_TRL_PYTHON``. Without it the table has kdlib's rows only, and says so.

Usage: ``python benchmarks/peers.py [--steps 6] [--warmup 2] [--batch 8] [--max-new-tokens 32]
[--precision bf16|fp32] [--threads N] [--trl-python PY] [--cases ...] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEACHER = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = "Describe the remote sensing image in one sentence. The scene class is: {cls}."
READABLE = {"baseballdiamond": "baseball diamond", "denseresidential": "dense residential",
            "golfcourse": "golf course", "mediumresidential": "medium residential", "mobilehomepark": "mobile home park",
            "parkinglot": "parking lot", "sparseresidential": "sparse residential", "storagetanks": "storage tanks",
            "tenniscourt": "tennis court"}
"""UCMerced folder names that are several words."""
KDLIB_CASES = {
    "kdlib-paper": {"ablate": [], "changes": {}},
    "kdlib-rkl": {"ablate": ["long", "lm"], "changes": {}},
    "kdlib-gkd": {"ablate": ["long", "lm", "teacher_mix"], "changes": {"divergence": "jsd", "jsd_beta": 0.5}},
}
TRL_CASES = {"trl-minillm": "minillm", "trl-gkd": "gkd"}
PEER = {"kdlib-paper": "trl-minillm", "kdlib-rkl": "trl-minillm", "kdlib-gkd": "trl-gkd"}
PACKAGES = ("torch", "transformers", "accelerate", "trl", "peft", "datasets")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def caption_pairs(data_root: Path, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` prompt/response rows from UCM-captions' training images: class-naming prompt, one caption."""
    from kdlib.data.captions import read_ucm_captions

    records = [r for r in read_ucm_captions(data_root, check_images=False) if r.meta["split"] == "train"]
    rng = random.Random(seed)
    rng.shuffle(records)
    rows = []
    for r in records[:n]:
        scene = READABLE.get(r.meta["class_dir"], r.meta["class_dir"])
        rows.append({"prompt": PROMPT.format(cls=scene), "response": rng.choice(r.meta["references"])})
    return rows


def prepare(folder: Path, data_root: Path, examples: int, seed: int) -> dict[str, str]:
    """The student folder and the rows file every case reads (built once per folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdlib.models import drop_layers
    from kdlib.paths import resolve_model

    teacher = resolve_model(TEACHER)
    student, rows = folder / "student", folder / "pairs.jsonl"
    if not (student / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32)
        drop_layers(model, tuple(range(0, model.config.num_hidden_layers, 2)))
        model.save_pretrained(student)
        AutoTokenizer.from_pretrained(teacher).save_pretrained(student)
    if not rows.is_file():
        rows.write_text("".join(json.dumps(r) + "\n" for r in caption_pairs(data_root, examples, seed)))
    return {"teacher": teacher, "student": str(student), "rows": str(rows)}


def kdlib_worker(case: str, paths: dict[str, str], args: argparse.Namespace, out: Path) -> None:
    """One kdlib case in this process: ``warmup + steps`` steps of :func:`kdlib.train.text.distill_text`."""
    import torch

    from kdlib.train.metrics_log import read_metrics
    from kdlib.train.text import distill_text

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = KDLIB_CASES[case]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{case}-"))
    distill_text(paths["teacher"], paths["student"], paths["rows"], run_dir, "small", "paper", spec["ablate"],
                 progress=False, device="cpu", steps=args.warmup + args.steps, batch_size=args.batch,
                 max_new_tokens=args.max_new_tokens, checkpoint_every=0, seed=args.seed,
                 dtype="bfloat16" if args.precision == "bf16" else "float32", **spec["changes"])
    rows = read_metrics(run_dir / "metrics.jsonl")[args.warmup:]
    seconds = sum(r["step_s"] for r in rows)
    generated = sum(r.get("generated_tokens", 0) for r in rows)
    out.write_text(json.dumps({
        "case": case, "sec_per_step_median": statistics.median(r["step_s"] for r in rows),
        "generated_per_s": generated / seconds, "trained_per_s": generated / seconds,
        "peak_rss_mib": max(r["peak_mem_mb"] for r in rows), "threads": torch.get_num_threads(),
        "losses": [r["loss"] for r in rows], "versions": versions()}))


def run_case(case: str, paths: dict[str, str], args: argparse.Namespace, folder: Path) -> dict | str:
    """Run one case in a fresh process; its result, or the reason it has none."""
    out = folder / f"{case}.json"
    out.unlink(missing_ok=True)
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
              "--max-new-tokens", str(args.max_new_tokens), "--precision", args.precision,
              "--threads", str(args.threads), "--seed", str(args.seed)]
    if case in TRL_CASES:
        command = [args.trl_python, str(HERE / "peer_trl.py"), "--method", TRL_CASES[case],
                   "--teacher", paths["teacher"], "--student", paths["student"], "--rows", paths["rows"]]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", case, "--prepared", json.dumps(paths)]
    print(f"[peers] {case} ...", flush=True)
    done = subprocess.run([*command, *common, "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        return f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}"
    return json.loads(out.read_text())


def trl_problem(python: str) -> str | None:
    """Why TRL's side cannot run, or None when the interpreter imports ``trl.experimental.minillm``."""
    if not python:
        return "TRL absent: no --trl-python / $KDLIB_TRL_PYTHON given (a venv with trl==1.14.2, e.g. kdlib[bench])"
    probe = subprocess.run([python, "-c", "import trl.experimental.minillm, trl.experimental.gkd"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"TRL absent: {python} cannot import trl.experimental.minillm (needs trl<=1.14.2)"
    return None


def table(results: dict[str, dict | str]) -> str:
    head = f"{'case':<12} {'s/step':>7} {'gen tok/s':>10} {'trained tok/s':>14} {'peak RSS GiB':>13} " \
           f"{'kdlib/TRL tok/s':>16} {'kdlib/TRL mem':>14}"
    lines = [head, "-" * len(head)]
    for case, r in results.items():
        if isinstance(r, str):
            lines.append(f"{case:<12} {r}")
            continue
        peer = results.get(PEER.get(case, ""))
        ratio = mem = ""
        if isinstance(peer, dict):
            ratio = f"{r['trained_per_s'] / peer['trained_per_s']:.2f}x vs {PEER[case][4:]}"
            mem = f"{r['peak_rss_mib'] / peer['peak_rss_mib']:.2f}"
        lines.append(f"{case:<12} {r['sec_per_step_median']:>7.2f} {r['generated_per_s']:>10.1f} "
                     f"{r['trained_per_s']:>14.1f} {r['peak_rss_mib'] / 1024:>13.2f} {ratio:>16} {mem:>14}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=2, help="steps run first and left out")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="auto: bf16 autocast where the CPU/GPU has bf16 instructions, else fp32 (both sides)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in every case (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=300, help="prompt/response rows drawn from UCM-captions")
    ap.add_argument("--cases", nargs="+", default=[*KDLIB_CASES, *TRL_CASES], choices=[*KDLIB_CASES, *TRL_CASES])
    ap.add_argument("--trl-python", default=os.environ.get("KDLIB_TRL_PYTHON", ""),
                    help="python of a venv with trl==1.14.2 (default: $KDLIB_TRL_PYTHON)")
    ap.add_argument("--data-root", default="", help="real data (default: $KDLIB_DATA)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kdlib-peers"),
                    help="folder for the student and the rows (kept between runs)")
    ap.add_argument("--json", default="", help="also write every result here")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--prepared", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.precision == "auto":
        from kdlib.train.harness import cpu_has_bf16

        args.precision = "bf16" if cpu_has_bf16() else "fp32"
    if args.worker:
        kdlib_worker(args.worker, json.loads(args.prepared), args, Path(args.out))
        return

    from kdlib.paths import resolve_data_root

    folder = Path(args.work)
    folder.mkdir(parents=True, exist_ok=True)
    paths = prepare(folder, resolve_data_root(args.data_root or None), args.examples, args.seed)
    absent = trl_problem(args.trl_python)
    results: dict[str, dict | str] = {}
    for case in args.cases:
        results[case] = absent if case in TRL_CASES and absent else run_case(case, paths, args, folder)
    print(f"\nbatch {args.batch}, {args.max_new_tokens} new tokens, {args.precision}, "
          f"{args.steps} timed steps after {args.warmup}, {args.threads or 'default'} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(table(results))
    if absent:
        print(absent)
    info = {"kdlib": versions(), "trl": next((r["versions"] for c, r in results.items()
                                              if c in TRL_CASES and isinstance(r, dict)), None)}
    print("versions:", json.dumps(info))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "versions": info}, indent=1))


if __name__ == "__main__":
    main()
