"""Test session set-up: 8 fake CPU devices for the sharding tests.

XLA_FLAGS must be set before jax is imported anywhere in the process.
"""
import os
import pathlib
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ci_demo_dirs(tmp_path_factory):
  """``(data_dir, xla_cache)`` shared by the tests that run the demo at CI size
  (``facetrack_jax.main``, ``facetrack_jax.sweep``): the synthetic set and its
  tokenizer are built once, and the compiled steps are reused."""
  root = tmp_path_factory.mktemp("ci_demo")
  return root / "data", root / "xla_cache"


# Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`): each test file is one
# group, so its module fixtures are built once, on one worker; the files that share
# `ci_demo_dirs` (the CI-size demo data and XLA cache) form one group.
_CI_DEMO_FILES = {"test_main.py", "test_sweep.py"}


def pytest_collection_modifyitems(config, items):
  for item in items:
    name = item.path.name
    item.add_marker(pytest.mark.xdist_group("ci_demo" if name in _CI_DEMO_FILES else name))
