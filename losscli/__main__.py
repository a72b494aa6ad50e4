"""``python -m losscli``."""

from losscli.entry import main

main()
