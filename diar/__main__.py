import sys

from diar.cli import main

sys.exit(main())
