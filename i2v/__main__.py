import sys

from i2v.cli import main

sys.exit(main())
