"""Monitoring for the serving platform: request capture, the capture store, drift scoring.

Sub-packages are imported on demand so that the model process only pays for what it uses:

* :mod:`monitoring.capture` -- runs inside each model process (stdlib + numpy only).
* :mod:`monitoring.store` -- the Parquet store: schema, writer, compaction, read API.
* :mod:`monitoring.sidecar` -- the per-host process moving spooled records into the store.
* :mod:`monitoring.drift` -- drift detectors.

``python -m monitoring --help`` lists the command-line tools (see :mod:`monitoring.cli`).
"""
