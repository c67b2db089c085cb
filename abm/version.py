"""The version of the abm package (recorded in every run file's provenance)."""

__version__ = "0.1.0"
