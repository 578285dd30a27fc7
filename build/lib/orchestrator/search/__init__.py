"""The evolutionary search, storage-free: selection (NSGA-II with constraint domination),
offspring generation, hypervolume, and motif analysis. The Ray driver that persists it
builds on these pure pieces."""
