"""Runtime layer: the code inside (and next to) the Triton model process -- the adapter, the
per-model runtimes (models/), checkpoints, capacity limits, the capture hook and the host's
watchdog and sidecar launcher. Imports only the contract (serving, serving.common,
monitoring.capture).
"""
