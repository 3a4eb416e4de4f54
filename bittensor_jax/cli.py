"""The scripts' shared entry point: absl flags, a quiet console, bad input as exit code 2.

  if __name__ == "__main__":
    cli.run(main)

A `ValueError` (our bad-input error, naming the field) or an `app.UsageError` raised by `main`
prints one line, `<script>: error: <message>`, to stderr and exits with status 2, instead of a
traceback (ValueError) or the whole flag listing (UsageError).
"""
import os
import sys

from absl import app

from bittensor_jax import loop

EXIT_BAD_INPUT = 2


def run(main) -> None:
  """`absl.app.run(main)` with `loop.quiet_console()` first and bad input as exit status 2."""
  prog = os.path.basename(sys.argv[0])

  def wrapped(argv):
    loop.quiet_console()
    try:
      return main(argv)
    except (ValueError, app.UsageError) as e:
      print(f"{prog}: error: {e}", file=sys.stderr)
      sys.exit(EXIT_BAD_INPUT)

  app.run(wrapped)
