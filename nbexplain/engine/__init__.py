"""The explainer engine: hooks, guards, targets, registry. Never imports widget code."""
