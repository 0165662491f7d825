"""llmfs: build a language model from scratch, and understand every line of it.

Importing this package imports no torch; each command imports what it needs.
"""

__version__ = "0.1.0"
