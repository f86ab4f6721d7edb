"""The one place Powertools Logger, Metrics and Tracer are created.

Service name and metrics namespace come from the standard Powertools variables
(``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``) that each
function's template sets; handlers import these three objects from here.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()
