"""Adapters of the external systems, one package per system, behind the protocols in
``integrations.protocols``; no Temporal imports."""
