"""The ``zactor`` command line (installed as the ``zactor_cli`` package)."""
