"""Experiment runners (scripts with a `main(argv)`, also behind the CLI)."""
