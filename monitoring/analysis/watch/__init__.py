"""``python -m monitoring watch``: score every window as it closes, remember what was scored,
publish each result (Prometheus through the saved scores, CloudWatch through :mod:`.cloudwatch`).

Modules, one job each:

* :mod:`.engine`  -- the ONE call into the scoring engine (re-point it there, nowhere else);
* :mod:`.ledger`  -- what was scored, kept in the store (a rerun scores nothing twice);
* :mod:`.lease`   -- per-window claims in the store, so N sidecars score each window once;
* :mod:`.metrics` -- a scored window -> metric data points (names shared with deploy/alarms.py);
* :mod:`.cloudwatch` -- PutMetricData or Embedded Metric Format publishing;
* :mod:`.loop`    -- the loop itself (used by the CLI and by the sidecar).
"""
