"""``rlgen quickstart``: the study in miniature, sized for a 2-core CPU in under 10 minutes.

The config is ``quickstart.yaml`` beside this module (``rlgen quickstart --print-config`` shows it;
save it, edit it and pass it to ``rlgen run`` for a study of your own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlgen.pipeline.plan import Stage
from rlgen.pipeline.study_run import load_study
from rlgen.pipeline.study import StudyConfig

QUICKSTART_CONFIG = Path(__file__).with_name("quickstart.yaml")


def load_quickstart(overrides: Sequence[str] = ()) -> tuple[StudyConfig, list[Stage]]:
    return load_study(QUICKSTART_CONFIG, overrides)
