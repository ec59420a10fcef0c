"""``python -m tests.support.dist_cli ARGS``: ``opid-bench ARGS`` with the test environments registered.

``--nproc N`` relaunches this module (not ``opid_gym``) through torchrun, so every
process registers the in-test ``letters`` benchmark before parsing its arguments.
"""

from __future__ import annotations

import sys

from opid_gym import launch
from opid_gym.cli import main
from tests.support import letters

if __name__ == "__main__":
    letters.register()
    launch.LAUNCH_MODULE = "tests.support.dist_cli"
    sys.exit(main(sys.argv[1:]))
