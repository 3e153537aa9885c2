"""Launch layer: starting a Triton server with this repository's models (server) and talking to
it (client, demo_client). Imports the runtime and the contract, never analysis or drivers.
"""
