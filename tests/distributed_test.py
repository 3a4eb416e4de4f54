"""Two processes on 127.0.0.1 (CPU, gloo) run the sharded network like one process does."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from bittensor_jax import network
from bittensor_jax.neurons import transformer

CFG = network.NetworkConfig(
    num_validators=2, num_servers=7, model=transformer.ModelConfig(width=16, depth=1, heads=2,
                                                                   context=16),
    seq_len=16, batch=4, local_steps=1, query_batch=2, tempo=5, weights_rate=5,
    max_server_tokens=20_000, max_eval_tokens=5_000)
BLOCKS = 10  # two calls of tempo (5) blocks: one compiled program


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  """README "over many hosts with jax.distributed": two processes (one mesh of 4 devices, each
  process half the model axis) give the one-process run's metrics and parameters."""
  out = tmp_path / "mp.npz"
  address = f"127.0.0.1:{free_port()}"
  worker = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  procs = [subprocess.Popen([sys.executable, worker, address, str(pid), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for pid in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-4000:]
  got = np.load(out)
  assert int(got["local_shards"]) == 2  # each process holds half of the model axis

  single = network.Network(CFG, network.make_mesh(jax.devices()[:4]))
  state, metrics = single.run(single.init(), BLOCKS)
  for key, value in metrics.items():
    np.testing.assert_allclose(got[f"m_{key}"], np.asarray(value), rtol=1e-4, atol=1e-5,
                               err_msg=key)
  for i, leaf in enumerate(jax.tree.leaves(state.params)):
    np.testing.assert_allclose(got[f"p_{i}"], np.asarray(leaf), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(os.environ.get("BTJ_MULTIHOST_TEST") != "1",
                    reason="set BTJ_MULTIHOST_TEST=1: two full train.py processes take minutes, and "
                           "jax.distributed's gloo shutdown aborted both (SIGABRT) in one CI-like run")
def test_train_py_many_host_flags_run_two_processes(tmp_path):
  """README "many hosts": scripts/train.py with --coordinator_address, --num_processes=2 and
  --process_id=0/1 joins one runtime of 2 processes (4 devices), both processes finish, and
  process 0 alone writes the run (loop.train_and_evaluate), with the issuance of every block."""
  import json  # pylint: disable=import-outside-toplevel
  from bittensor_jax import config as config_lib, history  # pylint: disable=import-outside-toplevel
  from bittensor_jax.chain import emission  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  preset = f"{os.path.join(root, 'configs', 'default.py')}:smoke"
  blocks = 20
  address = f"127.0.0.1:{free_port()}"
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  workdir = tmp_path / "run"
  cmd = lambda pid: [sys.executable, os.path.join(root, "scripts", "train.py"), f"--config={preset}",
                     f"--config.run.blocks={blocks}", f"--workdir={workdir}",
                     f"--coordinator_address={address}", "--num_processes=2",
                     f"--process_id={pid}"]
  procs = [subprocess.Popen(cmd(pid), cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for pid in range(2)]
  try:
    logs = [p.communicate(timeout=1500)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-4000:]
  for pid, log in enumerate(logs):
    line = next(l for l in log.splitlines() if f"process {pid}/2, devices" in l)
    assert line.count("CpuDevice(") == 4, line  # both processes' devices in one runtime
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["blocks"] == blocks
  cfg = config_lib.network_config(config_lib.load_preset(preset, {"run.blocks": blocks}))
  genesis_tao = sum(cfg.validator_stake_tao or [1000.0] * cfg.num_validators)
  assert summary["total_issuance_rao"] == (int(genesis_tao * emission.RAO_PER_TAO)
                                           + blocks * emission.DEFAULT_BLOCK_EMISSION_RAO)
  assert history.num_epochs(workdir / "history") == blocks // cfg.tempo
