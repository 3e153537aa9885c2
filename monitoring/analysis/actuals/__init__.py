"""Ground truth ("actuals"): labels posted after the fact, joined to predictions by request id.

    python -m monitoring actuals --file labels.csv        # columns: request_id,label

Stored as Arrow IPC batches under ``<store>/_monitoring/actuals/``; a later label for the same
request id replaces an earlier one.
"""

from .labels import accuracy_of, join_actuals, load_actuals, read_labels_csv, save_actuals

__all__ = ["accuracy_of", "join_actuals", "load_actuals", "read_labels_csv", "save_actuals"]
