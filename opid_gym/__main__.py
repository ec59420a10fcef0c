import sys

from opid_gym.cli import main

sys.exit(main())
