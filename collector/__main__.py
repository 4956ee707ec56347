import sys

from collector.main import main

sys.exit(main(sys.argv[1:]))
