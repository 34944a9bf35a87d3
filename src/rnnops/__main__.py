import sys

from rnnops.apps.cli import main

sys.exit(main())
