"""One module per ``noodle`` subcommand (discovered by :mod:`noodle.cli`)."""
