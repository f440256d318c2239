"""The `twinbook` command-line interface. Nothing imports this package."""
