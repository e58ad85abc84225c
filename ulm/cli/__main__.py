"""`python -m ulm.cli` = `ulm`."""
from ulm.cli import main

main()
