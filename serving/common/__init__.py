"""Contract layer: stdlib-only helpers every layer may import (reading /proc, the client retry
policy). Nothing here imports another first-party module.
"""
