"""The Ray runner (``runner: ray``): every stage a Ray task with its ``num_cpus``/``num_gpus``.

Without ``ray.address``, a fresh local Ray instance every time (``address="local"``), dashboard off.
With one, a TCP check first, so an address where nothing answers fails in seconds with one line
naming it, instead of ``ray.init`` retrying for many minutes. What Ray cannot restrict (its ports
listen on every interface) is said in :func:`ray_init_kwargs` and the README.
"""

from __future__ import annotations

import os
import socket
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
                check_ray_reachable(address, connect_timeout_s)
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


def _ray_stage(stage_data: dict[str, Any], threads: int, log: str, cwd: str) -> dict[str, Any]:
    # Stage paths may be relative to where `rlgen run` started; on a cluster that directory must be
    # on the shared file system.
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return execute_safely(stage_data, progress=False, threads=threads, log=log)
