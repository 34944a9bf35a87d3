import sys

from rnnops.cli import main

sys.exit(main())
