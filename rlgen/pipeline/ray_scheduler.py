"""The Ray runner (``runner: ray``): every stage a Ray task with its ``num_cpus``/``num_gpus``.

Without ``ray.address``, a fresh local Ray instance every time (``address="local"``), dashboard off.
With one, joining has a deadline (``ray.connect_timeout_s``): a TCP check first (nothing listens: fails
at once), then a trial ``ray.init`` in a child process that is killed at the deadline, since in-process
``ray.init`` has none (against a port that accepts TCP but is no Ray, a wrong port or a frozen head it
retried for over 10 minutes; Ray's own timeouts, ``RAY_gcs_rpc_server_*_timeout_s``, end it by aborting
the whole process). Either failure is one line naming the address. What Ray cannot restrict (its ports
listen on every interface) is said in :func:`ray_init_kwargs` and the README.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlgen.errors import DependencyError, RlgenError
from rlgen.pipeline.plan import Stage
from rlgen.pipeline.stages import error_line, execute_safely, log_path


class RayExecutor:
    """Every stage a Ray task; Ray schedules them on its resources."""

    foreground = False

    def __init__(self, log_dir: Path, address: str | None, connect_timeout_s: float = 10.0) -> None:
        try:
            import ray
        except ImportError:
            raise DependencyError("runner=ray needs Ray: pip install 'rlgen[ray]' (or pip install ray)") from None
        self.ray = ray
        self.log_dir = log_dir
        self._owns = not ray.is_initialized()
        if self._owns:
            if address and address != "local":
                deadline = time.monotonic() + connect_timeout_s
                check_ray_reachable(address, connect_timeout_s)
                check_ray_joins(address, connect_timeout_s, max(0.1, deadline - time.monotonic()))
            try:
                ray.init(**ray_init_kwargs(address))
            except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
                where = f"the Ray cluster at ray.address={address!r}" if address else "a local Ray instance"
                raise RlgenError(f"could not start or join {where}: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None
        self._task = ray.remote(_ray_stage)
        self.refs: dict[Any, Stage] = {}
        self.started: dict[str, float] = {}

    def fits(self, stage: Stage) -> bool:
        return True  # Ray queues tasks until their resources are free

    def start(self, stage: Stage) -> None:
        threads = max(1, int(stage.num_cpus))
        ref = self._task.options(num_cpus=stage.num_cpus, num_gpus=stage.num_gpus, max_retries=0).remote(
            stage.to_dict(), threads, str(log_path(self.log_dir, stage)), os.getcwd())  # fmt: skip
        self.refs[ref] = stage
        self.started[stage.id] = time.time()

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            stage = self.refs.pop(ref)
            try:
                result = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a crashed worker, an out-of-memory kill...
                result = {"ok": False, "error": error_line(e), "interrupted": False}
            out.append((stage.id, result))
        return out

    def running(self) -> list[str]:
        return [s.id for s in self.refs.values()]

    def interrupt(self, from_terminal: bool) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref)  # KeyboardInterrupt inside the task: it saves its checkpoint

    def close(self, force: bool = False) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)
        self.refs = {}
        if self._owns:
            self.ray.shutdown()


def ray_init_kwargs(address: str | None) -> dict[str, Any]:
    """``ray.init`` arguments. Without an address, a fresh local instance (``"local"``: Ray then reads
    neither ``RAY_ADDRESS`` nor the cluster an earlier ``ray start`` recorded in its temp dir), with
    the dashboard (and its job-submission API) off. Ray offers no way to bind its GCS, raylet and
    worker ports to 127.0.0.1 (it turns a loopback ``_node_ip_address`` into the machine's address),
    so those stay on all interfaces behind Ray's token authentication: see the README."""
    kwargs: dict[str, Any] = {
        "address": address or "local",
        "include_dashboard": False,
        "log_to_driver": False,  # the stages write logs of their own; Ray's forwarding would only repeat them here
    }
    if not address or address == "local":
        kwargs["dashboard_host"] = "127.0.0.1"  # in case a Ray version starts parts of it anyway
    return kwargs


def check_ray_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, with one line naming ``address``, when no Ray cluster answers there (``ray.init``
    would retry for many minutes, printing only GCS reconnect warnings).

    ``address``: ``HOST:PORT``, ``ray://HOST:PORT`` (Ray Client) or ``auto`` (the cluster that
    ``RAY_ADDRESS`` or the last ``ray start`` on this machine names). A TCP connection to the port is
    what is checked.
    """
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto") or ""
        except Exception as e:  # noqa: BLE001 - ConnectionError when none is recorded
            raise RlgenError(f"ray.address='auto': no running Ray cluster found on this machine ({str(e).strip()[:120]}); "
                             "start one with `ray start --head`, give its HOST:PORT, or drop ray.address for a local Ray") from None  # fmt: skip
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise RlgenError(f"ray.address={address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        why = f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        shown = address if target == address else f"{address} ({target})"
        raise RlgenError(f"ray.address={shown}: no Ray cluster can be reached there ({why}); "
                         "check that it runs (`ray status`), or drop ray.address to start a local Ray") from None  # fmt: skip


#: The trial join of :func:`check_ray_joins`, run by ``python -c`` (argv[1]: the ``ray.init`` keyword arguments as JSON).
_JOIN_PROBE = r"""
import json, re, sys
import ray
try:
    ray.init(**json.loads(sys.argv[1]), logging_level="ERROR")
except Exception as e:
    why = []
    while e is not None and len(why) < 3:  # Ray's ConnectionError hides the reason in its causes (AuthenticationError...)
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        named = [x for x in lines if re.match(r"^[\w.]+(Error|Exception): ", x)]  # an error quoted in a traceback text
        why.append((named[-1] if named else type(e).__name__ + (": " + lines[0] if lines else ""))[:300])
        e = e.__cause__
    print("rlgen-ray-probe:", "; caused by ".join(why), file=sys.stderr)
    sys.exit(3)
ray.shutdown()
"""


def check_ray_joins(address: str, timeout_s: float, left_s: float | None = None) -> None:
    """Join the cluster at ``address`` once in a child process and kill it if that takes longer than the
    deadline (``left_s`` seconds, default ``timeout_s``): one line naming ``address`` instead of a hang.

    A child, because ``ray.init`` cannot be interrupted in-process, and its own timeouts end in an abort
    of the process that called it. Joining an existing cluster starts no Ray processes of its own, so
    killing the child leaves nothing behind.
    """
    import json

    left = timeout_s if left_s is None else left_s
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the address given is the one tried
    cmd = [sys.executable, "-c", _JOIN_PROBE, json.dumps(ray_init_kwargs(address))]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # run() has killed the child
        raise RlgenError(f"ray.address={address}: could not join a Ray cluster there within ray.connect_timeout_s={timeout_s:g} s "
                         "(the port answers, but not as a Ray head that lets this process join); check the address and that the "
                         "cluster runs (`ray status`), raise ray.connect_timeout_s, or drop ray.address to start a local Ray") from None  # fmt: skip
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.startswith("rlgen-ray-probe:")]
        why = said[-1].removeprefix("rlgen-ray-probe:").strip() if said else f"exit status {done.returncode}"
        raise RlgenError(f"ray.address={address}: could not join the Ray cluster there ({why[:600]}); check the address and "
                         "that the cluster runs (`ray status`), or drop ray.address to start a local Ray")  # fmt: skip


def _ray_stage(stage_data: dict[str, Any], threads: int, log: str, cwd: str) -> dict[str, Any]:
    # Stage paths may be relative to where `rlgen run` started; on a cluster that directory must be
    # on the shared file system.
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return execute_safely(stage_data, progress=False, threads=threads, log=log)
