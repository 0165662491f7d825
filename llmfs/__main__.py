"""`python -m llmfs` runs the same command-line app as the `llmfs` command."""

import sys

from llmfs.cli import main

sys.exit(main())
