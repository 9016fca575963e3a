"""The core's own plugin (entry point ``core``): the risk-model tuning case.

Registered only when the ``tune`` extra (Optuna, scikit-learn) is installed, so a lean core
never lists a pipeline it cannot run.
"""

from __future__ import annotations

from typing import Any

from deepseek.hookspecs import hookimpl
from deepseek.lazy import lazy_callable


@hookimpl
def register_pipelines(register: Any) -> None:
    from deepseek.extras import missing

    if missing("tune"):
        return
    register("core.tune-risk-model", lazy_callable("deepseek.risk:tune_risk_model"),
             description="genetic-algorithm tuning (Optuna NSGA-II) of an MLP risk model on "
                         "scikit-learn's bundled breast cancer data: held-out AUC of the "
                         "defaults and of the tuned parameters")
    register("core.risk-model", lazy_callable("deepseek.risk:risk_model"), demo=False,
             description="the risk model's cross-validated AUC for given parameters (the "
                         "objective core.tune-risk-model optimises)")
