"""Output files: HDF5 schema, writer, checkpoints and exact restart, provenance.

* :mod:`abm.io.schema`      layout (groups, dimensions, variables), schema version,
                            netCDF-4 dimension-scale helpers
* :mod:`abm.io.h5file`      opening run files with one-line errors; the ``.part`` name
* :mod:`abm.io.writer`      :class:`~abm.io.writer.RunWriter`: incremental writing,
                            crash safety (``.part`` + rename), resume/truncate
* :mod:`abm.io.checkpoint`  the complete State in ``/checkpoint/step_<N>``;
                            :func:`~abm.io.checkpoint.load_checkpoint`,
                            :func:`~abm.io.checkpoint.restore_simulation`
* :mod:`abm.io.provenance`  root attributes (software, config, seed, environment, wall times)
* :mod:`abm.io.run`         :func:`~abm.io.run.run_to_file`: what ``abm run`` does
* :mod:`abm.io.h5repair`    opening files whose writer was killed

Reading files is the job of :mod:`analysis.io` (``open_run``, ``open_group``,
``read_provenance``), which depends on the schema only.
"""
