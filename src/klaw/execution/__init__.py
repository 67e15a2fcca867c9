"""Execution: readiness, the runner and the executors."""
