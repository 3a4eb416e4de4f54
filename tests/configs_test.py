"""Every preset and experiment config converts to a NetworkConfig; overrides and errors."""
import pathlib

import pytest

from bittensor_jax import config as config_lib
from bittensor_jax import network

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "configs" / "default.py"
EXPERIMENTS = ROOT / "configs" / "experiments"
PRESETS = ("smoke", "small", "large")
CASES = ([f"{DEFAULT}:{p}" for p in PRESETS] + [str(DEFAULT)] +
         [f"{EXPERIMENTS / name}.py:{p}" for name in ("honest", "weight_copiers", "cabal_attack")
          for p in PRESETS] +
         [f"{EXPERIMENTS / 'yuma3_vs_classic.py'}:{v}" for v in
          ("classic", "yuma3", "classic,smoke", "yuma3,large", "smoke", "liquid_alpha,yuma3")])


@pytest.mark.parametrize("spec", CASES, ids=lambda s: pathlib.Path(s).name)
def test_converts(spec):
  c = config_lib.load_preset(spec)
  cfg = config_lib.network_config(c)
  assert isinstance(cfg, network.NetworkConfig)
  hash(cfg)  # closed over by jit
  run = config_lib.run_settings(c)
  assert run["blocks_per_call"] == cfg.tempo
  assert cfg.seed == c.seed
  assert isinstance(cfg.validator_stake_tao, tuple)


def test_preset_sizes():
  smoke = config_lib.network_config(config_lib.load_preset(f"{DEFAULT}:smoke"))
  large = config_lib.network_config(config_lib.load_preset(f"{DEFAULT}:large"))
  assert (smoke.num_validators, smoke.num_servers, smoke.model.width, smoke.seq_len) == (
      2, 6, 32, 32)
  assert (large.num_validators, large.num_servers, large.model.width, large.model.depth,
          large.seq_len) == (8, 56, 128, 4, 128)


def test_experiments():
  load = lambda name, arg: config_lib.network_config(
      config_lib.load_preset(f"{EXPERIMENTS / name}.py:{arg}"))
  honest = load("honest", "small")
  assert honest.server_behaviours().tolist() == [network.HONEST] * 12
  cabal = load("cabal_attack", "small")
  stake = cabal.validator_stake_tao_V()
  share = stake[-cabal.cabal_validators:].sum() / stake.sum()
  assert cabal.cabal_validators < cabal.num_validators / 2 and share == pytest.approx(0.3)
  bigger = config_lib.network_config(config_lib.load_preset(
      f"{EXPERIMENTS / 'cabal_attack'}.py:small", {"network.cabal_stake_share": 0.45}))
  stake = bigger.validator_stake_tao_V()
  assert stake[-bigger.cabal_validators:].sum() / stake.sum() == pytest.approx(0.45)
  assert (cabal.server_behaviours()[-cabal.cabal_servers:] == network.NOISE).all()
  assert load("weight_copiers", "smoke").lazy_validators == 1
  assert load("yuma3_vs_classic", "yuma3").yuma3 and not load("yuma3_vs_classic", "classic").yuma3
  smoke = load("yuma3_vs_classic", "smoke")
  assert not smoke.yuma3 and not smoke.liquid_alpha and smoke.num_servers == 6
  both = load("yuma3_vs_classic", "yuma3,liquid_alpha,smoke")
  assert both.yuma3 and both.liquid_alpha and both.lazy_validators == 1
  with pytest.raises(ValueError, match="classic"):
    load("yuma3_vs_classic", "yuma5")


def test_overrides():
  c = config_lib.load_preset(f"{DEFAULT}:smoke", {
      "network.num_servers": 8, "network.model.width": 64, "network.validator_stake_tao": (1, 2),
      "seed": 7, "run.blocks_per_call": 5})
  cfg = config_lib.network_config(c)
  assert (cfg.num_servers, cfg.model.width, cfg.validator_stake_tao, cfg.seed) == (
      8, 64, (1.0, 2.0), 7)
  assert config_lib.run_settings(c)["blocks_per_call"] == 5
  c = config_lib.load_preset(f"{DEFAULT}:smoke", {"network.data_dir": "/some/folder"})
  assert config_lib.network_config(c).data_dir == "/some/folder"


@pytest.mark.parametrize("overrides, field", [
    ({"network.nope": 1}, "network.nope"),
    ({"network.model.nope": 1}, "network.model.nope"),
    ({"network.kappa": "high"}, "network.kappa"),
    ({"run.blocks": 1.5}, "run.blocks"),
])
def test_bad_overrides_name_the_field(overrides, field):
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    config_lib.load_preset(f"{DEFAULT}:smoke", overrides)


@pytest.mark.parametrize("key, value, field", [
    ("num_servers", 1, "network.num_servers"),
    ("scoring", "vibes", "network.scoring"),
    ("validator_stake_tao", (1.0,), "network.validator_stake_tao"),
    ("tempo", True, "network.tempo"),
    ("skew", float("nan"), "network.skew"),
    ("batch", 0, "network.batch"),
    ("kappa", 1.5, "network.kappa"),
    ("kappa", 70000, "network.kappa"),
    ("bonds_penalty", -0.1, "network.bonds_penalty"),
    ("alpha_low", 0.95, "network.alpha_low"),   # above alpha_high = 0.9
    ("cabal_stake_share", 0.3, "network.cabal_stake_share"),   # no cabal validators
    ("extra", 1, "network.extra"),
])
def test_bad_values_name_the_field(key, value, field):
  c = config_lib.load_preset(f"{DEFAULT}:smoke").to_dict()
  c["network"][key] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    config_lib.network_config(c)


@pytest.mark.parametrize("section, key, value, field", [
    ("model", "heads", 0, "network.model.heads"),
    ("model", "width", 33, "network.model.width"),
    ("train", "schedule", "linear", "network.train.schedule"),
    ("train", "lr", -1.0, "network.train.lr"),
])
def test_bad_nested_values_name_the_field(section, key, value, field):
  c = config_lib.load_preset(f"{DEFAULT}:smoke").to_dict()
  c["network"][section][key] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    config_lib.network_config(c)


def test_run_settings_errors():
  c = config_lib.load_preset(f"{DEFAULT}:smoke").to_dict()
  c["run"]["log_every_epochs"] = 0
  with pytest.raises(ValueError, match=r"run\.log_every_epochs"):
    config_lib.run_settings(c)


@pytest.mark.parametrize("value, u16", [
    (0.5, 32767), (1.0, 65535), (0.0, 0), (0.7, 45874), (32767, 32767), (1, 1),
    (32767.0, 32767), (65535, 65535)])
def test_u16_proportion_rule(value, u16):
  assert network.u16_proportion(value) == u16


def test_fractions_reach_the_chain():
  c = config_lib.load_preset(f"{DEFAULT}:smoke", {"network.kappa": 0.25,
                                                  "network.bonds_penalty": 40000})
  cfg = config_lib.network_config(c)
  assert (cfg.u16("kappa"), cfg.u16("bonds_penalty")) == (16383, 40000)
