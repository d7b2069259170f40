import sys

from svd.cli import main

sys.exit(main())
