"""The `tailor` command line (`cli.main`), on top of every other package; each sub-command
imports the package it drives when it runs."""
