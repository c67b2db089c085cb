"""Studies over many virtual patients: global sensitivity analysis and calibration.

Each study designs parameter points, runs them as batches on the batch
executors (local pool or Dask), and summarises the endpoints into an xarray
dataset with figures.
"""
