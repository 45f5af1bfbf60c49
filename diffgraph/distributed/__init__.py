"""Running workflows on a Ray cluster: a pool of Session workers, cache-aware batches, the server's queue."""
