"""Notebook widgets (being written). Imports the engine; the engine never imports this."""
