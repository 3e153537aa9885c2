"""Exports to the monitors teams already run, in the form each one ingests without editing.

* :mod:`.frame` -- captured records (+ actuals, thumbnails) of a window and the baseline as one
  flat table: prediction id, timestamp, prediction, actual, embedding, image link, features, tags.
* :mod:`.arize` -- that table + the pandas logger's ``Schema`` (``arize`` SDK, optional extra).
* :mod:`.fiddler` -- the event table its client publishes + a ``ModelSpec`` (``fiddler-client``).
* :mod:`.groundtruth` -- SageMaker Model Monitor ground truth JSON lines, joined on ``inferenceId``
  with the Data Capture export (:mod:`monitoring.ingest.store.datacapture`).

``python -m monitoring export --to arize|fiddler|datacapture --model M [--since/--until] --out DIR``
"""
