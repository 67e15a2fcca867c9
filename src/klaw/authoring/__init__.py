"""Authoring: how people describe stages, assets and workflows."""
