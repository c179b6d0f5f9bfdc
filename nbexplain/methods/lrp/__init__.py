"""Layer-wise relevance propagation (being written)."""
