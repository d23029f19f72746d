"""`python -m api.cli`: the `chronicle` command, as the stack starts its processes."""

from api.cli import main

main()
