"""Two processes on 127.0.0.1 (CPU, gloo) run the sharded network like one process does."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from bittensor_jax import network
from bittensor_jax.neurons import transformer

CFG = network.NetworkConfig(
    num_validators=2, num_servers=7, model=transformer.ModelConfig(width=16, depth=1, heads=2,
                                                                   context=16),
    seq_len=16, batch=4, local_steps=1, query_batch=2, tempo=5, weights_rate=5,
    max_server_tokens=20_000, max_eval_tokens=5_000)
BLOCKS = 12


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
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
