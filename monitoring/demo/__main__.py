import sys

from monitoring.demo.run import main

sys.exit(main())
