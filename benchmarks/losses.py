"""Peak extra memory and time of the plain vs the chunked (lean) distillation loss.

Both paths start from the last hidden states ``[N, H]`` of a student and a teacher and their
output heads ``[V, H]`` and run forward + backward: gradients for the student hidden states and,
with ``--train-head``, the student head weight (frozen by default, as in GeoChat's LoRA, which
leaves ``lm_head`` out):

* plain: ``heads -> [N, V] logits -> kdlib.losses.divergences -> backward``;
* lean: :func:`kdlib.losses.chunked.chunked_divergence`.

Every case runs in a fresh Python process, so the allocator state of one case cannot hide the
memory of another. Peak extra memory is measured on CPU as the resident-set high-water mark
above the resident set just before the loss (Linux: ``/proc/self/clear_refs`` resets
``VmHWM``; ``MALLOC_MMAP_THRESHOLD_`` makes freed large buffers leave the process), on CUDA as
``torch.cuda.max_memory_allocated`` above ``memory_allocated``. It includes the gradient
buffers (``[N, H]``, and ``[V, H]`` with ``--train-head``), which both paths must produce. Time:
the fastest of up to 3 runs (fewer when a run is slow) after a small warm-up, as wall time and
as process CPU time (less sensitive to other processes on a shared machine).

Usage: ``python benchmarks/losses.py [--quick] [--train-head] [--chunk-size ROWS] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from kdlib.losses.chunked import DEFAULT_CHUNK_SIZE, chunked_divergence
from kdlib.losses.divergences import generalized_jsd

KIND_BETA = {"reverse_kl": 1.0, "jsd": 0.5}  # generalized_jsd's beta for the plain path
FULL = {"vocab": [32000, 49152, 151936], "tokens": [512, 2048], "big_vocab_tokens": [512]}
QUICK = {"vocab": [32000], "tokens": [512], "big_vocab_tokens": [512]}
MAX_REPEATS, REPEAT_BUDGET_S = 3, 4.0  # timed runs per cell: the fastest counts (shared CPUs are noisy)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakMemory:
    """Peak extra bytes of the enclosed block (CPU: resident set, CUDA: allocator)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.extra = device, 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
            self.base = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.extra = torch.cuda.max_memory_allocated() - self.base
        else:
            self.extra = _rss_kib("VmHWM") * 1024 - self.base


def _inputs(n: int, vocab: int, hidden: int, train_head: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    make = lambda *shape: (torch.randn(*shape, generator=g) / shape[-1] ** 0.25).to(device)  # noqa: E731
    return (make(n, hidden).requires_grad_(), make(vocab, hidden).requires_grad_(train_head), make(n, hidden),
            make(vocab, hidden))


def _step(path: str, kind: str, tensors: tuple[torch.Tensor, ...], chunk: int) -> None:
    hs, ws, ht, wt = tensors
    if path == "plain":
        with torch.no_grad():
            zt = ht @ wt.T
        loss = generalized_jsd(hs @ ws.T, zt, KIND_BETA[kind])
    else:
        loss = chunked_divergence(hs, ws, ht, wt, kind=kind, chunk_size=chunk)
    loss.backward()


def worker(path: str, kind: str, vocab: int, n: int, hidden: int, chunk: int, train_head: bool,
           device: torch.device) -> dict:
    """Forward+backward after a small warm-up, repeated while cheap; peak bytes and fastest seconds."""
    _step(path, kind, _inputs(min(n, 64), vocab, hidden, train_head, device), chunk)  # warm-up (kernels, pages)
    tensors = _inputs(n, vocab, hidden, train_head, device)
    times: list[float] = []
    cpu_times: list[float] = []
    peak = 0
    while not times or (len(times) < MAX_REPEATS and sum(times) < REPEAT_BUDGET_S):
        tensors[0].grad = tensors[1].grad = None
        with PeakMemory(device) as mem:
            start, cpu_start = time.perf_counter(), time.process_time()
            _step(path, kind, tensors, chunk)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        peak = max(peak, mem.extra)
    return {"bytes": peak, "seconds": min(times), "cpu_seconds": min(cpu_times)}


def run_case(path: str, kind: str, vocab: int, n: int, args: argparse.Namespace, chunk: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    cmd = [sys.executable, __file__, "--worker", path, kind, str(vocab), str(n), str(args.hidden), str(chunk),
           "--device", args.device] + (["--train-head"] if args.train_head else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark case {path} {kind} V={vocab} N={n} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one vocabulary, one token count (a smoke test)")
    ap.add_argument("--chunk-size", type=int, default=0, help="rows per chunk (0 = kdlib's default)")
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--train-head", action="store_true",
                    help="student head trainable (its [V, H] gradient counts); default frozen, as in GeoChat's LoRA")
    ap.add_argument("--vocab", type=int, nargs="*", help="override the vocabulary sizes")
    ap.add_argument("--tokens", type=int, nargs="*", help="override the token counts")
    ap.add_argument("--worker", nargs=6, metavar=("PATH", "KIND", "V", "N", "H", "CHUNK"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        path, kind, vocab, n, hidden, chunk = args.worker
        print(json.dumps(worker(path, kind, int(vocab), int(n), int(hidden), int(chunk), args.train_head,
                                torch.device(args.device))))
        return 0
    grid = dict(QUICK if args.quick else FULL)
    if args.vocab:
        grid["vocab"] = args.vocab
    if args.tokens:
        grid["tokens"] = grid["big_vocab_tokens"] = args.tokens
    print(f"device {args.device}, hidden {args.hidden}, torch threads {torch.get_num_threads()}, student head "
          f"{'trainable' if args.train_head else 'frozen'}, forward + backward from hidden states, "
          "one fresh process per cell\n")
    header = ("| loss | V | N | chunk | plain MiB | lean MiB | lean/plain mem | plain s | lean s | lean/plain time "
              "| lean/plain CPU time |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for vocab in grid["vocab"]:
        tokens = grid["big_vocab_tokens"] if vocab > 100_000 else grid["tokens"]
        chunk = args.chunk_size or DEFAULT_CHUNK_SIZE
        for n in tokens:
            for kind in KIND_BETA:
                plain = run_case("plain", kind, vocab, n, args, chunk)
                lean = run_case("lean", kind, vocab, n, args, chunk)
                mib = lambda b: b / 2**20  # noqa: E731
                print(f"| {kind} | {vocab:,} | {n:,} | {chunk} | {mib(plain['bytes']):.0f} | {mib(lean['bytes']):.0f} "
                      f"| {lean['bytes'] / plain['bytes']:.3f} | {plain['seconds']:.2f} | {lean['seconds']:.2f} "
                      f"| {lean['seconds'] / plain['seconds']:.2f} "
                      f"| {lean['cpu_seconds'] / plain['cpu_seconds']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
