"""Service: the orchestrator and the wiring of concrete backends."""
