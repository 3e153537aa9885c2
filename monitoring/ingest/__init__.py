"""Records into the store: the Parquet store itself (store/) and the per-host sidecar that moves
spooled capture records into it (sidecar/; it also runs the watch loop and serves the
drift gauges, so it sits above analysis/ while store/ sits below it).
"""
