"""`python -m ssb_s3` runs the CLI."""

from .cli import main

main()
