"""gamews: a Twisted service that lets game servers talk live with web browsers."""

__version__ = "0.1.0"
"""gamews's version (packaging reads it from here: ``[tool.hatch.version]``)."""
