"""Klaw's network interfaces: Arrow Flight (``klaw.api.flight``) and, later, HTTP."""
