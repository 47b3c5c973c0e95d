"""``python -m xlembed``: the CLI (also what ``torchrun -m xlembed distill ...`` starts on each rank)."""

from .cli import main

main()
