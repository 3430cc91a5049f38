"""The whole study from one config: study schema, stage plan, stages, the scheduler (local pool, Ray), the quickstart.

    from rlgen.pipeline import load_study, run_study
    study, stages = load_study("configs/study/procgen_expert.yaml", ["envs=[procgen/coinrun]"])
    result = run_study(study, stages)          # skips every stage whose output is current

Modules: ``study`` (the config), ``plan`` (stages and hashes), ``stages`` (running one stage), ``scheduler`` and
``ray_scheduler`` (running many), ``study_run`` (``rlgen run``), ``evaluate_run`` (the evaluate-and-record
path shared with ``rlgen evaluate``), ``quickstart``.
"""

from rlgen.errors import StudyInterrupted
from rlgen.pipeline.plan import Stage, plan_study
from rlgen.pipeline.study import StudyConfig
from rlgen.pipeline.study_run import StudyResult, load_study, results_table, run_study, summary_lines

__all__ = ["Stage", "StudyConfig", "StudyInterrupted", "StudyResult", "load_study", "plan_study", "results_table", "run_study", "summary_lines"]
