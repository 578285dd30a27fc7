"""Genome -> `torch.nn.Module` (the compiler); the exact static costs it must match are in
`core.costs`."""
