"""`python -m cnnlab` (and `torchrun -m cnnlab`) run the CLI."""

from cnnlab.cli import main

main()
