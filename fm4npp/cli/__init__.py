"""The ``fm4npp-sweep`` command line (layer L5): argument parsing (``main``, ``args``) and rendering
(``render``); each subcommand is one library call. Command modules import nothing heavy at module
level."""

from __future__ import annotations
