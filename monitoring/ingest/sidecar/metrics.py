"""Prometheus metrics of the capture sidecar (own registry, own port; Triton keeps :8002)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SidecarMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        m = ["model"]
        self.received = Counter("capture_records_received", "Records read from spool segments.", m, registry=r)
        self.written = Counter("capture_records_written", "Records written to the store.", m, registry=r)
        self.rejected = Counter("capture_records_rejected", "Records not matching the schema (kept under <spool>/_rejected).", m, registry=r)
        self.dropped = Counter("capture_records_dropped", "Records dropped in model processes because the capture queue was full (as reported by them).", m, registry=r)
        self.sampled_out = Counter("capture_records_sampled_out", "Requests not captured because of the sampling rate (as reported by model processes).", m, registry=r)
        self.unknown_fields = Counter("capture_unknown_fields_dropped", "Record keys outside the contract, dropped by model processes.", m, registry=r)
        self.producer_write_errors = Counter("capture_producer_write_errors", "Failed spool segment writes in model processes (each retried).", m, registry=r)
        self.queue_depth = Gauge("capture_queue_depth", "Capture queue depth last reported by a model process.", m, registry=r)
        self.spool_segments = Gauge("capture_spool_segments", "Finished segments waiting in the spool (sidecar backlog).", registry=r)
        self.spool_bytes = Gauge("capture_spool_bytes", "Bytes of finished segments waiting in the spool.", registry=r)
        self.bytes_received = Counter("capture_bytes_received", "Bytes of spool segments ingested.", m, registry=r)
        self.bytes_written = Counter("capture_bytes_written", "Parquet bytes written to the store.", m, registry=r)
        self.write_seconds = Histogram(
            "capture_write_seconds", "Latency of writing one segment to the store.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )
        self.write_errors = Counter("capture_write_errors", "Failed writes (retried with backoff).", ["target"], registry=r)
        self.store_up = Gauge("capture_store_up", "1 if the last store write succeeded, 0 while failing.", registry=r)
        self.outages = Counter("capture_store_outages", "Store outages ended (writes failed, then succeeded again).", registry=r)
        self.last_outage_seconds = Gauge("capture_store_last_outage_seconds", "Last store outage: first failed write to the first successful one.", registry=r)
        self.last_catchup_seconds = Gauge("capture_store_last_catchup_seconds", "After the last outage: store back to an empty spool backlog.", registry=r)
        self.unflushed_tmp_files = Counter("capture_unflushed_tmp_files", "Unfinished temp files found after an unclean stop and removed.", ["where"], registry=r)
        self.unflushed_tmp_bytes = Counter("capture_unflushed_tmp_bytes", "Bytes in unfinished temp files removed after an unclean stop.", ["where"], registry=r)
        self.compactions = Counter("capture_compactions", "Partitions compacted.", registry=r)
        self.compaction_files_removed = Counter("capture_compaction_files_removed", "Small files merged away by compaction.", registry=r)
        self.segments_ingested = Counter("capture_segments_ingested", "Spool segments fully ingested and removed.", registry=r)
        self.store_up.set(1)
