"""Start the kopf operator in this process (`ampx operator`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Optional


def run_operator(namespaces: list[str], all_namespaces: bool, liveness: Optional[str],
                 verbose: bool = False) -> None:
    import kopf

    from . import operator  # noqa: F401  (registers the handlers)
    from .api import current_namespace

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kubernetes", "urllib3", "github"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from ..task_rules import rules_from_env

    rules_from_env(warn=False)  # a task rule it cannot read stops the operator here, with the reason
    from .capacity import limits_from_env

    limits_from_env()  # so does a concurrency limit
    if not all_namespaces and not namespaces:
        namespaces = [current_namespace()]
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=all_namespaces,
        namespaces=[] if all_namespaces else namespaces,
        liveness_endpoint=liveness,
    ))
