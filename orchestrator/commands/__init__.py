"""The `tailor` sub-commands, one module per group."""
