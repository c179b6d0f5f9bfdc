"""``Explanation``, where it was first importable from (it lives in ``nbexplain.engine``)."""

from .engine.explanation import Explanation

__all__ = ["Explanation"]
