"""The seq-MNIST network as a JAX user would write it in twenty lines: the peer of credit's step.

``jax.value_and_grad`` of a ``lax.scan`` forward pass, cross-entropy on the last
step plus L2 ``reg/2 * sum w^2`` over ``W_in``, ``W_rec``, ``W_out``, optax SGD,
the batch drawn from a 55,000-image uint8 array on the device, a chunk of steps
under one ``jit`` (``lax.scan`` over steps), seeds by ``jax.vmap`` (what the JAX
documentation shows) or ``lax.map``. Same network as credit's reference protocol
(N ReLU units, no leak, no autapses, T = 28 rows of 28 pixels, batch 256).

* ``bptt``: reverse mode through the scan;
* ``three_factor``: the same with the recurrent input behind ``stop_gradient``
  where it enters through ``W_rec`` (the reference code's three-factor rule,
  e-prop's gradient for a leak-free ReLU network).

It imports jax without credit, with credit's XLA flag (YNNPACK fusions off) set
the same way, so the two programs compile under the same options. Run it in a
process of its own; it prints JSON: seconds per seed-step for each rule and seed count.

  python benchmarks/jax_peer.py --n_hidden=128 --seeds=1,5,20 --steps=20 --repeats=3
"""

from __future__ import annotations

import argparse
import json
import os
import time

# credit.runtime's setting, set before JAX's CPU backend starts (same compile options).
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402


def make_chunk(rule: str, n: int, batch: int, n_seeds: int, layout: str, reg: float = 1e-2):
  """``(params, opt_state, key) -> same`` after ``steps`` SGD steps, for ``n_seeds`` seeds."""
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (55_000, 28, 28), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 55_000), jnp.int32)
  mask = 1.0 - jnp.eye(n)
  opt = optax.sgd(1e-2)

  def loss_fn(p, x, y):
    w = p["w_rec"] * mask
    drive = jnp.swapaxes(x, 0, 1) @ p["w_in"].T + p["b"]

    def body(h, d):
      h_in = jax.lax.stop_gradient(h) if rule == "three_factor" else h
      return jax.nn.relu(h_in @ w.T + d), None

    h, _ = jax.lax.scan(body, jnp.zeros((x.shape[0], n)), drive)
    logits = h @ p["w_out"].T + p["b_out"]
    xent = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
    l2 = sum(jnp.sum(p[k] ** 2) for k in ("w_in", "w_rec", "w_out"))
    return xent + 0.5 * reg * l2

  def step(carry, _):
    p, s, key = carry
    key, k = jax.random.split(key)
    idx = jax.random.randint(k, (batch,), 0, images.shape[0])
    x = images[idx].astype(jnp.float32) / 255.0
    _, g = jax.value_and_grad(loss_fn)(p, x, labels[idx])
    u, s = opt.update(g, s, p)
    p = optax.apply_updates(p, u)
    return (p, s, key), None

  def chunk(carry, steps):
    return jax.lax.scan(step, carry, None, length=steps)[0]

  def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    lim = (6 / (n + 10)) ** 0.5
    p = {
      "w_in": jax.random.normal(k1, (n, 28)) * (2 / 28) ** 0.5,
      "w_rec": jax.random.normal(k2, (n, n)) * (2 / n) ** 0.5 * mask,
      "b": jnp.zeros(n),
      "w_out": jax.random.uniform(k3, (10, n), minval=-lim, maxval=lim),
      "b_out": jnp.zeros(10),
    }
    return p, opt.init(p), key

  keys = jax.random.split(jax.random.key(0), n_seeds)
  carry = jax.vmap(init)(keys)
  if layout == "vmap":
    run = jax.jit(jax.vmap(chunk, in_axes=(0, None)), static_argnums=1)
  else:
    run = jax.jit(lambda c, steps: jax.lax.map(lambda ci: chunk(ci, steps), c), static_argnums=1)
  return run, carry


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n_hidden", type=int, default=128)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seeds", default="1,5,20")
  parser.add_argument("--rules", default="bptt,three_factor")
  parser.add_argument("--layout", choices=("vmap", "map"), default="vmap")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  out = {}
  for rule in args.rules.split(","):
    for s in (int(v) for v in args.seeds.split(",")):
      run, carry = make_chunk(rule, args.n_hidden, args.batch, s, args.layout)
      jax.block_until_ready(run(carry, args.steps))
      best = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(carry, args.steps))
        best.append((time.perf_counter() - t0) / args.steps / s)
      out[f"{rule}_seeds{s}"] = float(np.median(best))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
