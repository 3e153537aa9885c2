import sys

from serving.loadtest.cli import main

sys.exit(main())
