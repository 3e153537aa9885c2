"""Getting drift verdicts to people and machines: alert levels, Prometheus gauges, a webhook on alarm.

* :mod:`.levels` -- ok/warning/critical from a score; scoring, the watch loop, fleet and the
  report all use it, which is why alerts/ sits in analysis/ rather than outputs/.
* :func:`export_scores` registers a collector on a ``prometheus_client`` registry (the sidecar's)
  that publishes the latest saved scores of every model at each scrape.
* :func:`post_webhook` POSTs a JSON summary of a scoring run when a window alarms.

Alert rules for Prometheus: ``deploy/prometheus/alerts.yml``.
"""

from .prometheus import DriftScoresCollector, export_scores
from .webhook import alarm_payload, post_webhook

__all__ = ["DriftScoresCollector", "alarm_payload", "export_scores", "post_webhook"]
