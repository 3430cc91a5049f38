"""Where training scalars go: TensorBoard always, and Weights & Biases too when a config's ``logger`` lists it.

Every trainer writes its scalars through ``rlgen.agents.run_dir.tensorboard_writer``; given the run's config it
returns a :class:`ScalarFanOut`, which writes each ``add_scalar`` to TensorBoard and logs it to a wandb run
under the same tag (``train/...``, ``eval/train_levels/...``...), at the same step. wandb steps must increase,
and rlgen's writers sometimes log an earlier step after a later one (a resumed run, the ladder's rungs), so
each scalar carries its step as ``global_step`` and the wandb run plots against that.

wandb is imported only here, only when asked; it runs offline unless told otherwise (``rlgen.config.tracking``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
from pathlib import Path
from typing import Any

from rlgen.atomic_files import write_text_atomic
from rlgen.errors import DependencyError, RlgenError

#: The file in a run directory keeping its wandb run id, so a resumed run continues the same wandb run.
WANDB_ID_FILE = "wandb.json"
#: The step every scalar is plotted against in wandb (``define_metric``).
STEP_KEY = "global_step"


#: Seconds wandb may take to start (online: to reach its server) before the run fails with one line; wandb's own
#: default waited about 100 s in silence without network (review of issue 16).
INIT_TIMEOUT_S = 30


def wants_wandb(cfg: Any) -> bool:
    return "wandb" in (getattr(cfg, "logger", None) or ())


def check_loggers(cfg: Any) -> None:
    """Before training: with ``logger: [..., wandb]``, wandb must be importable (one line saying how to get it).

    Raises:
        DependencyError: wandb is asked for and not installed.
    """
    if not wants_wandb(cfg):
        return
    try:
        found = importlib.util.find_spec("wandb") is not None
    except ValueError:  # sys.modules["wandb"] is None: its import is blocked
        found = False
    if not found:
        raise DependencyError("logger: [tensorboard, wandb] needs the wandb package, which is not installed: "
                              "pip install 'rlgen[wandb]' (or pip install wandb), or set logger=[tensorboard]")  # fmt: skip


def wandb_mode(cfg: Any) -> str:
    """The config's ``wandb.mode``, else ``$WANDB_MODE``, else ``offline``."""
    return cfg.wandb.mode or os.environ.get("WANDB_MODE") or "offline"


def open_wandb_run(cfg: Any, run_dir: Path) -> Any:
    """A wandb run for ``run_dir`` (the one its earlier attempts logged to, when it resumes), in
    ``$WANDB_DIR`` when set, else the run directory (``<run_dir>/wandb/``).

    Raises:
        DependencyError: wandb is not installed, or does not import.
        RlgenError: wandb refused to start (e.g. ``mode: online`` without credentials), with its reason.
    """
    check_loggers(cfg)
    try:
        import wandb  # noqa: PLC0415 - optional, and only when a config asks for it
    except ImportError as e:  # installed but broken (e.g. a protobuf it cannot use): one line, not its traceback
        raise DependencyError(f"wandb is installed but does not import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                              "pip install -U 'rlgen[wandb]' to repair it, or set logger=[tensorboard]") from None  # fmt: skip

    id_file = run_dir / WANDB_ID_FILE
    try:
        run_id = json.loads(id_file.read_text())["id"] if id_file.is_file() else None
    except (ValueError, KeyError, TypeError):
        run_id = None  # a damaged id file: a new wandb run rather than a failed training run
    if run_id is None:
        run_id = secrets.token_hex(4)  # wandb ids: lower-case letters and digits
        write_text_atomic(id_file, json.dumps({"id": run_id}))
    settings = cfg.wandb
    mode = wandb_mode(cfg)
    # explicit settings override wandb's environment: a user's WANDB_INIT_TIMEOUT (wandb's documented knob) must win
    timeout = {} if os.environ.get("WANDB_INIT_TIMEOUT") else {"init_timeout": INIT_TIMEOUT_S}
    try:
        run = wandb.init(project=settings.project, entity=settings.entity, group=settings.group, tags=list(settings.tags) or None,
                         name=run_dir.name, id=run_id, resume="allow", mode=mode, dir=os.environ.get("WANDB_DIR") or str(run_dir),
                         config=cfg.model_dump(mode="json"),
                         settings=wandb.Settings(console="off", silent=True, reinit="create_new", **timeout))  # fmt: skip
    except Exception as e:  # noqa: BLE001 - wandb raises many kinds (auth, network, usage); each is one line here
        raise RlgenError(f"wandb (mode {mode}) did not start: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                         "use wandb.mode=offline (no account needed) or logger=[tensorboard]") from None  # fmt: skip
    run.define_metric(STEP_KEY)
    run.define_metric("*", step_metric=STEP_KEY)
    return run


class ScalarFanOut:
    """A TensorBoard ``SummaryWriter`` whose scalars also go to a wandb run; everything else is the writer's.

    Attributes:
        tb: the ``SummaryWriter`` (TensorBoard files in the run directory, as without wandb).
        wandb_run: the wandb run each ``add_scalar`` is also logged to.
    """

    def __init__(self, tb: Any, wandb_run: Any) -> None:
        self.tb = tb
        self.wandb_run = wandb_run

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None, *args: Any, **kwargs: Any) -> None:
        self.tb.add_scalar(tag, scalar_value, global_step, *args, **kwargs)
        row = {tag: float(scalar_value)}
        if global_step is not None:
            row[STEP_KEY] = int(global_step)
        self.wandb_run.log(row)

    def close(self) -> None:
        self.tb.close()
        self.wandb_run.finish()

    def __getattr__(self, name: str) -> Any:  # flush, add_text, add_hparams... (SB3's output format calls some)
        return getattr(self.tb, name)
