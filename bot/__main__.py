"""`python -m bot` runs the `solace` command line."""

from bot.cli import main

main()
