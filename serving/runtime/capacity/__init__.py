"""GPU capacity of a request: memory and time per model and image size (costs.json, traced at real
size), the limits that refuse what would not fit, and the admission queue (`python -m
serving.runtime.capacity` prints the tables of docs/gpu.md)."""
