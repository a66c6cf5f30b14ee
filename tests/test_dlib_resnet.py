"""data_prep/dlib_resnet.py: dlib's face-descriptor network read from dlib's
own file and run in JAX gives dlib's descriptors; a file that is not that
network is refused with its name."""

import numpy as np
import pytest

from data_prep import detect_dlib, dlib_resnet

dlib = pytest.importorskip("dlib", reason="dlib-bin not installed (requirements.txt)")


@pytest.fixture(scope="module")
def weights():
  try:
    return detect_dlib.model_path("dlib_face_recognition_resnet_model_v1.dat")
  except FileNotFoundError as e:
    pytest.skip(str(e))


def test_jax_descriptors_equal_dlibs(weights):
  rng = np.random.default_rng(0)
  # smooth random "chips": noise blurred a little, so activations are not degenerate
  chips = rng.integers(0, 256, (3, 150, 150, 3)).astype(np.float32)
  chips = ((chips + np.roll(chips, 1, 1) + np.roll(chips, 1, 2)) / 3).astype(np.uint8)
  ref = np.asarray(dlib.face_recognition_model_v1(str(weights)).compute_face_descriptor(
      list(chips)), np.float32)
  net = dlib_resnet.JaxDescriptor(weights)
  np.testing.assert_allclose(net(chips), ref, atol=1e-4)
  np.testing.assert_allclose(net(chips[1:2]), ref[1:2], atol=1e-4)   # batch of 1
  assert net(chips[:0]).shape == (0, 128)


def test_a_file_that_is_not_the_network_is_refused(weights, tmp_path):
  data = weights.read_bytes()
  cut = tmp_path / "half.dat"
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match="half.dat"):
    dlib_resnet.read_weights(cut)
  other = detect_dlib.model_path("mmod_human_face_detector.dat")
  with pytest.raises(ValueError, match="mmod_human_face_detector.dat"):
    dlib_resnet.read_weights(other)
