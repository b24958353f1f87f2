"""Command-line adapters: the only package that imports typer or rich, prints, prompts or exits."""
