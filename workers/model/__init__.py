"""Genome JSON -> `torch.nn.Module`, and the exact static costs of the module it builds."""
