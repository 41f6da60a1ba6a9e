"""One module per ``diar`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""
