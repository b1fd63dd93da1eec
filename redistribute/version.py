"""The package version, importable without torch (``redistribute --version`` and every spec read it)."""

__version__ = "0.1.0"
