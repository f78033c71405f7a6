"""TRL's side of ``benchmarks/peers.py``: one ``MiniLLMTrainer`` or ``GKDTrainer`` run, timed step by step.

Runs in TRL's own virtual environment (trl 1.14.2, the last release with ``trl.experimental.minillm``)
and imports nothing from kdlib. It reads the student folder and the prompt/response rows that
``peers.py`` prepared, trains ``warmup + steps`` steps with TRL's defaults except the settings
listed in :data:`CHANGED` (and the batch, new tokens and precision shared with kdlib's cases), and
writes one JSON: median s/step, generated and trained completion tokens/s, peak RSS, losses, versions.

Token counts: MiniLLM trains on the student's own completions, so generated = trained =
``completion_mask.sum()``; GKD samples from the student with probability ``lmbda`` (0.5) per step
and otherwise trains on the reference response: generated counts the sampled tokens, trained the
tokens with a label.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from importlib import metadata

CHANGED = {
    "use_cpu": True,  # no GPU here
    "save_strategy": "no",
    "report_to": "none",
    "logging_steps": 1,  # every loss
    "dataloader_num_workers": 0,
    "disable_tqdm": True,
}
"""TrainingArguments set away from TRL's defaults, besides batch, steps, new tokens, precision and seed."""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trainer_for(method: str, args: argparse.Namespace, rows: list[dict], counts: dict):
    """The TRL trainer of ``method``, subclassed only to count the tokens of each step into ``counts``."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = dict(output_dir=tempfile.mkdtemp(prefix=f"trl-{method}-"), max_steps=args.warmup + args.steps,
                  per_device_train_batch_size=args.batch, seed=args.seed, bf16=args.precision == "bf16", **CHANGED)
    if method == "minillm":
        from trl.experimental.minillm import MiniLLMConfig, MiniLLMTrainer

        class Counted(MiniLLMTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                completion = int(inputs["completion_mask"].sum())
                counts["generated"] += completion
                counts["trained"] += completion
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        group = 8 if args.batch % 8 == 0 else args.batch  # TRL's default group of 8 when it divides the batch
        config = MiniLLMConfig(num_generations=group, max_completion_length=args.max_new_tokens, **common)
        data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows])
        return Counted(model=args.student, teacher_model=args.teacher, args=config, train_dataset=data)

    from trl.experimental.gkd import GKDConfig, GKDTrainer

    class CountedGKD(GKDTrainer):
        def generate_on_policy_outputs(self, model, inputs, *rest, **kwargs):
            ids, mask, labels = GKDTrainer.generate_on_policy_outputs(model, inputs, *rest, **kwargs)
            counts["generated"] += int(mask[:, inputs["prompts"].shape[1]:].sum())
            return ids, mask, labels

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            counts["trained"] += int((inputs["labels"] != -100).sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    config = GKDConfig(max_new_tokens=args.max_new_tokens, **common)
    data = Dataset.from_list([{"messages": [{"role": "user", "content": r["prompt"]},
                                            {"role": "assistant", "content": r["response"]}]} for r in rows])
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32)
    return CountedGKD(model=student, teacher_model=teacher, args=config, train_dataset=data,
                      processing_class=AutoTokenizer.from_pretrained(args.student))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["minillm", "gkd"], required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--rows", required=True, help="JSONL of prompt/response rows")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch
    from transformers import TrainerCallback

    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.rows) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    counts = {"generated": 0, "trained": 0}
    steps: list[dict] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            counts.update(generated=0, trained=0, start=time.perf_counter())

        def on_step_end(self, *_, **__):
            steps.append({"s": time.perf_counter() - counts["start"], "generated": counts["generated"],
                          "trained": counts["trained"]})

        def on_log(self, *_, logs=None, **__):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer = trainer_for(args.method, args, rows, counts)
    trainer.add_callback(Clock())
    trainer.train()
    timed = steps[args.warmup:]
    seconds = sum(s["s"] for s in timed)
    found = {}
    for name in ("torch", "transformers", "accelerate", "trl", "peft", "datasets"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    with open(args.out, "w") as f:
        json.dump({"case": f"trl-{args.method}", "sec_per_step_median": statistics.median(s["s"] for s in timed),
                   "generated_per_s": sum(s["generated"] for s in timed) / seconds,
                   "trained_per_s": sum(s["trained"] for s in timed) / seconds, "peak_rss_mib": peak_rss_mib(),
                   "threads": torch.get_num_threads(), "losses": losses,
                   "versions": {"python": platform.python_version(), **found}}, f)


if __name__ == "__main__":
    main()
