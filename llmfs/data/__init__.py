"""Data: turning input specs into documents (`sources`), and later token shards and batches."""
