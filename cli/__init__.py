"""The `backbone` command line (typer): one module per command group, joined in cli.main."""
