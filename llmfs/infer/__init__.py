"""Inference: sampling filters, batched generation over the KV cache, the chat loop."""
