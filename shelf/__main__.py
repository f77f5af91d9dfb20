import sys

from shelf.serving.cli import main

sys.exit(main())
