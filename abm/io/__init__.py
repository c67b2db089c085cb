"""Output files: HDF5 writer, reader, checkpoints and provenance."""
