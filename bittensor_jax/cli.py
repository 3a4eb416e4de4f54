"""The scripts' shared entry point: absl flags, a quiet console, bad input as exit code 2.

  if __name__ == "__main__":
    cli.run(main)

Repeat runs skip most of XLA's compile time: the persistent compilation cache is on, in
`$JAX_COMPILATION_CACHE_DIR` when set, else `~/.cache/bittensor_jax/jax` (`$XDG_CACHE_HOME` is
honoured); `BTJ_COMPILE_CACHE=0` turns it off. Every compile is kept, however short (JAX keeps
only those over 1 s unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` says otherwise).

A `ValueError` (our bad-input error, naming the field) or an `app.UsageError` raised by `main`
prints one line, `<script>: error: <message>`, to stderr and exits with status 2, instead of a
traceback (ValueError) or the whole flag listing (UsageError); so do a malformed flag value and a
`--config.X` override of a field the config does not have (absl alone: a traceback, status 1).
"""
import ast
import os
import sys

from absl import app, flags

from bittensor_jax import loop

EXIT_BAD_INPUT = 2


def enable_compile_cache() -> str | None:
  """Turns on JAX's persistent compilation cache (see the module docstring); returns its folder."""
  if os.environ.get("BTJ_COMPILE_CACHE", "1") == "0":
    return None
  import jax  # pylint: disable=import-outside-toplevel
  path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bittensor_jax", "jax")
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    # keep every compile, not only those over JAX's 1 s default: a run's start-up (model init,
    # the ledger) is a few hundred small eager ops of ~60 ms compile each, ~15 s per start
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return path


def run(main) -> None:
  """`absl.app.run(main)` with `loop.quiet_console()` first and bad input as exit status 2."""
  prog = os.path.basename(sys.argv[0])

  def wrapped(argv):
    loop.quiet_console()
    enable_compile_cache()
    try:
      return main(argv)
    except (ValueError, app.UsageError) as e:
      print(f"{prog}: error: {e}", file=sys.stderr)
      sys.exit(EXIT_BAD_INPUT)

  def parse(argv):
    # a malformed flag value (absl: flags.Error) or an override of a field the config does not
    # have (ml_collections raises AttributeError / KeyError while parsing) is bad input too
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      print(f"{prog}: error: {e}", file=sys.stderr)
    except (AttributeError, KeyError) as e:
      msg = str(e.args[0] if e.args else e)
      if msg[:1] in "'\"" and msg[-1:] == msg[:1]:  # ml_collections quotes its message
        msg = ast.literal_eval(msg)
      msg = msg.replace("\n", "; ")
      print(f"{prog}: error: no such config field: {msg}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)

  app.run(wrapped, flags_parser=parse)
