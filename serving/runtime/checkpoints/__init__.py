"""Model checkpoints: tiny offline ones for CPU machines, real ones from the hub, safety checks.

Every model loads `model_repository/<model>/1/checkpoint/` (a `save_pretrained` directory)
with `from_pretrained`; tiny and real checkpoints differ only in size.
"""
