"""gamews test suite.

Whatever a test runs (gamews in-process or ``twistd`` children, which inherit the
environment) keeps its match archive in a directory of the run's own, never in the
user's data directory (``GAMEWS_DATA``: README "The match archive").
"""

import atexit
import os
import shutil
import tempfile

if "GAMEWS_DATA" not in os.environ:
    os.environ["GAMEWS_DATA"] = tempfile.mkdtemp(prefix="gamews-tests-data-")
    atexit.register(shutil.rmtree, os.environ["GAMEWS_DATA"], ignore_errors=True)
