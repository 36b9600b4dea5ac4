"""Real data that ships with every Python: the docstrings of the standard library."""

from .stdlib_docs import docstring_items, package_docstring_items

__all__ = ["docstring_items", "package_docstring_items"]
