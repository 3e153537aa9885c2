"""Drift and quality from the stored records: detectors (drift), baselines, window scoring,
fleet-scale scoring, actuals, the watch loop, alert levels, and where their artifacts live.
"""
