"""Metadata: runs, stage attempts, events, logs and metrics (leaf adapter)."""
