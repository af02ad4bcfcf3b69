"""Clients of a remote ``mlpilot server`` implementing the same backend protocols as the local services."""
