"""Data: sources (built-in, local files, hub datasets), token shards, and stage-specific datasets."""
