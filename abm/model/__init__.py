"""Model rules: one cell type or physiological subsystem per module.

Each module defines a frozen parameter section (fields carry units) and the
rule that advances its part of the state, with equations in the docstrings.
"""
