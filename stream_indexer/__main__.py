import sys

from stream_indexer.cli import main

sys.exit(main())
