"""Subcommands of the ``rtik`` CLI, one module each (see :mod:`rtik.cli`)."""
