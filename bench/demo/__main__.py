import sys

from bench.demo.run import main

sys.exit(main())
