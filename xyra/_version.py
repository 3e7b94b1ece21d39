"""The one place Xyra's version is written."""

__version__ = "0.3.0"
