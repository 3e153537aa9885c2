"""``python -m bench.demo`` (``make demo``): the drift workflow end to end, offline.

Trains a small ResNet on scikit-learn's real digits, serves it (and two SD models) on the real
Triton server with capture on, replays three "weeks" of traffic (clean, blurred, darkened),
posts actuals, scores each week against the training baseline and writes the HTML report.
See docs/demo.md.
"""
