"""Monitoring for the serving platform: request capture, the capture store, drift scoring.

Sub-packages are imported on demand so that the model process only pays for what it uses.
One folder per role, in the order a record travels (docs/architecture.md has the layers):

capture/ -- inside the model process (the contract layer: stdlib + numpy, imports nothing else of ours)
  * :mod:`monitoring.capture` -- builds, samples and spools request records; the sidecar's command
    line as others start it (:mod:`monitoring.capture.sidecar_command`).

ingest/ -- records into the store
  * :mod:`monitoring.ingest.store` -- the Parquet store: schema, writer, compaction, read API.
  * :mod:`monitoring.ingest.sidecar` -- the per-host process moving spooled records into the store
    (it also runs the watch loop and serves the drift gauges, so it may import analysis/).

analysis/ -- drift and quality from the stored records
  * :mod:`monitoring.analysis.artifacts` -- where baselines, scores and actuals live inside the store.
  * :mod:`monitoring.analysis.baseline` -- versioned baselines: embedding and metadata samples, manifest.
  * :mod:`monitoring.analysis.drift` -- the drift detectors (embeddings and request metadata).
  * :mod:`monitoring.analysis.scoring` -- scores a model's records against its baseline, window by window.
  * :mod:`monitoring.analysis.fleet` -- the same at fleet scale: per-partition states, merged, scored.
  * :mod:`monitoring.analysis.actuals` -- labels posted later, joined to predictions by request id.
  * :mod:`monitoring.analysis.watch` -- scores every window as it closes and publishes each result.
  * :mod:`monitoring.analysis.alerts` -- alert levels, the Prometheus gauges and the webhook on alarm
    (here, not in outputs/: scoring decides the levels and posts the webhook).

outputs/ -- to people and other tools
  * :mod:`monitoring.outputs.report` -- the self-contained HTML drift report.
  * :mod:`monitoring.outputs.export` -- exports to the monitors teams already run (Arize, Fiddler).
  * :mod:`monitoring.outputs.explore` -- the window and its baseline in Phoenix's embedding explorer.

At the root: :mod:`monitoring.cli` (``python -m monitoring --help`` lists the command-line tools)
and :mod:`monitoring.jsonable`. :mod:`bench.demo` (``make demo``) drives the whole workflow end to
end, offline.
"""
