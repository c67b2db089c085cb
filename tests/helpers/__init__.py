"""Helpers shared by several test modules (no tests here).

* :mod:`helpers.cells`     arenas for the cell-rule tests and the mixed scenario
* :mod:`helpers.brain`     brain configs and synthetic plasma courses
* :mod:`helpers.runfiles`  synthetic schema-1 run files and batches for the analysis tests
* :mod:`helpers.stats`     reference statistics computed by hand

``tests/`` is on ``sys.path`` when pytest runs (no ``__init__.py`` there), so
test modules import them as ``from helpers.cells import make_sim``.
"""
