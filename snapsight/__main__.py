import os
import sys

if not __package__:  # run as `python snapsight/__main__.py`: drop snapsight/ from sys.path, where ssl/ would shadow Python's ssl
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from snapsight.cli import main

sys.exit(main())
