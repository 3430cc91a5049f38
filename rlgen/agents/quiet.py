"""Keep third-party import-time banners off the user's terminal.

d3rlpy depends on the old ``gym`` package, whose import prints a deprecation banner to stderr;
stable-baselines3 and d3rlpy both ``import gym`` when it is installed. Importing it once here with
stderr captured leaves the module cached and the terminal clean.
"""

from __future__ import annotations

import contextlib
import io
import sys


def silence_gym_banner() -> None:
    if "gym" in sys.modules:
        return
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            import gym  # noqa: F401, PLC0415
        except ImportError:
            pass
