import sys

from mutations.platformserver.cli import main

sys.exit(main())
