import sys

from snapsight.cli import main

sys.exit(main())
