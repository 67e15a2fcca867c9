"""Graph: build, validate, select and plan workflows."""
