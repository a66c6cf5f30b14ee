"""host_memory: the re-executed process really runs with the tunables, once."""

import os
import subprocess
import sys

import pytest

from facetrack_jax import host_memory

CHILD = ("from facetrack_jax import host_memory; host_memory.retain_freed_memory(); "
         "import os; print('TUNABLES', os.environ.get('GLIBC_TUNABLES')); "
         "print('MARK', os.environ.get(host_memory.OPT_OUT))")


def _run(env):
  out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                       text=True, timeout=120, check=True)
  return out.stdout, out.stderr


@pytest.mark.skipif(not host_memory.wanted({}), reason="needs Linux with glibc")
def test_reexecutes_once_with_the_tunables_and_keeps_others():
  env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=7", JAX_PLATFORMS="cpu")
  env.pop(host_memory.OPT_OUT, None)
  stdout, stderr = _run(env)
  assert stderr.count("host_memory: re-executing") == 1
  assert f"TUNABLES glibc.malloc.tcache_count=7:{host_memory.TUNABLES}" in stdout
  assert "MARK reexecuted" in stdout


def test_cpu_only_reads_jax_platforms_first():
  assert host_memory.cpu_only({"JAX_PLATFORMS": "cpu"})
  assert not host_memory.cpu_only({"JAX_PLATFORMS": "cuda,cpu"})
  assert not host_memory.cpu_only({"JAX_PLATFORMS": "tpu"})


def test_opt_out_and_already_set_do_nothing():
  assert not host_memory.wanted({host_memory.OPT_OUT: "default"})
  assert not host_memory.wanted({"GLIBC_TUNABLES": host_memory.TUNABLES})
  assert not host_memory.wanted(host_memory.environment({}))
  env = dict(os.environ, **{host_memory.OPT_OUT: "default"})
  stdout, stderr = _run(env)
  assert "re-executing" not in stderr and "MARK default" in stdout


@pytest.mark.skipif(not host_memory.wanted({}), reason="needs Linux with glibc")
@pytest.mark.parametrize("jax_on_cpu_only,reexecutes", [(True, False), (False, True)])
def test_host_bound_work_reexecutes_even_when_jax_would_use_an_accelerator(
    jax_on_cpu_only, reexecutes):
  child = CHILD.replace("retain_freed_memory()",
                        f"retain_freed_memory(jax_on_cpu_only={jax_on_cpu_only})")
  env = dict(os.environ, JAX_PLATFORMS="tpu")
  env.pop(host_memory.OPT_OUT, None)
  env.pop("GLIBC_TUNABLES", None)
  out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                       text=True, timeout=120, check=True)
  assert ("re-executing" in out.stderr) == reexecutes
  assert ("MARK reexecuted" in out.stdout) == reexecutes


@pytest.mark.skipif(not host_memory.wanted({}), reason="needs Linux with glibc")
@pytest.mark.parametrize("choice,reexecutes", [(None, False), ("retain", True),
                                                ("default", False)])
def test_trainer_entry_points_reexecute_only_on_request(choice, reexecutes):
  """The trainer, the demo and evaluate (by_default=False) keep glibc's default
  malloc unless FACETRACK_HOST_MALLOC=retain."""
  child = CHILD.replace("retain_freed_memory()", "retain_freed_memory(by_default=False)")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("GLIBC_TUNABLES", None)
  env.pop(host_memory.OPT_OUT, None)
  if choice:
    env[host_memory.OPT_OUT] = choice
  out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                       text=True, timeout=120, check=True)
  assert ("re-executing" in out.stderr) == reexecutes
  assert (host_memory.TUNABLES in out.stdout) == reexecutes
  assert not host_memory.wanted({}, by_default=False)
  assert host_memory.wanted({host_memory.OPT_OUT: "retain"}, by_default=False)
