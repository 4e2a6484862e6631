"""The pool's lifecycle hooks, called through pluggy (so hook wrappers, ``tryfirst`` and
``trylast`` are honoured) from the plugin manager of the registry the pool came from."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pluggy

logger = logging.getLogger("executors.pool")

#: the hooks a pool calls
HOOKS = (
    "executors_executor_ready",
    "executors_executor_closed",
    "executors_job_started",
    "executors_job_finished",
    "executors_pool_unhealthy",
    "executors_pool_statistics",
)


class Observers:
    """Calls one pool's lifecycle hooks. A hook that raises is logged and ignored: pluggy
    stops that one call at the implementation that raised (a wrapper may catch it), and
    the pool goes on, so an observer can never change an outcome. Which hooks have
    implementations is read once, when the pool opens: a hook nobody implements costs a
    set lookup."""

    __slots__ = ("_hook", "_wanted")

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._hook = pm.hook
        self._wanted = frozenset(name for name in HOOKS if getattr(pm.hook, name).get_hookimpls())

    def wants(self, hook: str) -> bool:
        return hook in self._wanted

    def call(self, hook: str, **kwargs: object) -> None:
        if hook not in self._wanted:
            return
        try:
            getattr(self._hook, hook)(**kwargs)
        except Exception:
            job = kwargs.get("job") or kwargs.get("outcome")
            fields = {
                "pool": kwargs.get("pool_name"),
                "job_id": getattr(job, "job_id", getattr(job, "id", None)),
                "executor_id": kwargs.get("executor_id"),
                "reason": "observer_raised",
            }
            logger.exception("an observer raised in %s; ignored", hook, extra=fields)
