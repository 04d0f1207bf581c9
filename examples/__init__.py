"""Runnable examples of embedding smh-async (each a package; see its README)."""
