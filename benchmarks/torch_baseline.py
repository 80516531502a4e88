"""The seq-MNIST network as a researcher would write it by hand: a plain PyTorch eager loop.

Same network and step as credit's reference protocol (N = 128 ReLU units, no
leak, no autapses, T = 28 rows of 28 pixels, batch 256, cross-entropy on the
last step plus L2 ``reg/2 * sum w^2`` over W_in, W_rec, W_out, plain SGD), with
the batch drawn from a 55,000-image array in memory, as credit's step does.

* ``bptt``: autograd through the unrolled loop;
* ``three_factor``: the reference code's rule, the recurrent input detached
  (``h_{t-1}.detach()`` where it enters through ``W_rec``).

``--compile`` also times each step under ``torch.compile`` (the strongest PyTorch peer
on CPU). Seeds run one after another in PyTorch, so its time per seed-step does not
depend on the number of seeds.

Needs torch (on a CPU machine its CPU build, ``pip install torch --index-url
https://download.pytorch.org/whl/cpu``: plain ``pip install torch`` fetches a multi-GB CUDA
build); :func:`step_time` returns ``None``
when it is not installed. Run it in a process of its own (``python
benchmarks/torch_baseline.py`` prints JSON; ``benchmarks/train_step.py`` does
so): in a process where XLA's CPU thread pool is up, the two thread pools
compete and PyTorch's loop runs tens of times slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def step_time(
  rule: str,
  n_hidden: int = 128,
  n_steps: int = 28,
  n_in: int = 28,
  n_out: int = 10,
  batch: int = 256,
  steps: int = 20,
  repeats: int = 5,
  threads: int | None = None,
  compile: bool = False,
) -> float | None:
  """Median seconds per SGD step of the eager loop (``None`` without torch).

  ``compile``: the step under ``torch.compile`` (forward, backward and the SGD update
  in one compiled function, the loop unrolled by the tracer), timed after its compile.
  """
  try:
    import torch
  except ImportError:
    return None
  if rule not in ("bptt", "three_factor"):
    raise ValueError(f"rule must be 'bptt' or 'three_factor', got {rule!r}")
  if threads:
    torch.set_num_threads(threads)
  gen = torch.Generator().manual_seed(0)
  images = torch.rand(55_000, n_steps, n_in, generator=gen)
  labels = torch.randint(0, n_out, (55_000,), generator=gen)
  mask = 1.0 - torch.eye(n_hidden)
  w_in = (torch.randn(n_hidden, n_in, generator=gen) * (2 / n_in) ** 0.5).requires_grad_()
  w_rec = torch.randn(n_hidden, n_hidden, generator=gen) * (2 / n_hidden) ** 0.5 * mask
  w_rec.requires_grad_()
  b = torch.zeros(n_hidden, requires_grad=True)
  limit = (6 / (n_hidden + n_out)) ** 0.5
  w_out = ((torch.rand(n_out, n_hidden, generator=gen) * 2 - 1) * limit).requires_grad_()
  b_out = torch.zeros(n_out, requires_grad=True)
  opt = torch.optim.SGD([w_in, w_rec, b, w_out, b_out], lr=1e-2)
  detach = rule == "three_factor"

  def step():
    idx = torch.randint(0, images.shape[0], (batch,))
    x, y = images[idx], labels[idx]
    w = w_rec * mask
    drive = x @ w_in.T + b
    h = torch.zeros(batch, n_hidden)
    for t in range(n_steps):
      h = torch.relu((h.detach() if detach else h) @ w.T + drive[:, t])
    logits = h @ w_out.T + b_out
    l2 = 0.5 * 1e-2 * (w_in.square().sum() + w_rec.square().sum() + w_out.square().sum())
    loss = torch.nn.functional.cross_entropy(logits, y) + l2
    opt.zero_grad()
    loss.backward()
    opt.step()

  if compile:
    step = torch.compile(step)
  for _ in range(5):
    step()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      step()
    times.append((time.perf_counter() - t0) / steps)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n_hidden", type=int, default=128)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--compile", action="store_true", help="also time torch.compile")
  parser.add_argument(
    "--threads",
    default="",
    help="comma-separated intra-op thread counts to time (the best is kept)",
  )
  args = parser.parse_args()
  out = {}
  threads = [int(t) for t in args.threads.split(",") if t] or [None]
  for compiled in (False, True) if args.compile else (False,):
    for rule in ("bptt", "three_factor"):
      times = [
        step_time(
          rule,
          n_hidden=args.n_hidden,
          batch=args.batch,
          steps=args.steps,
          repeats=args.repeats,
          threads=th,
          compile=compiled,
        )
        for th in threads
      ]
      out[rule + ("_compile" if compiled else "")] = None if None in times else min(times)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
