"""The whole study from one config: stages, sweeps, local and Ray runners, the quickstart.

    from rlgen.pipeline import load_study, run_study
    study, stages = load_study("configs/study/procgen_expert.yaml", ["envs=[procgen/coinrun]"])
    result = run_study(study, stages)          # skips every stage whose output is current
"""

from rlgen.pipeline.plan import Stage, plan_study
from rlgen.pipeline.run import StudyResult, load_study, results_table, run_study, summary_lines
from rlgen.pipeline.runners import StudyInterrupted
from rlgen.pipeline.study import StudyConfig

__all__ = ["Stage", "StudyConfig", "StudyInterrupted", "StudyResult", "load_study", "plan_study", "results_table", "run_study", "summary_lines"]
