# Run with: twistd -ny tapfiles/gamews.tac
# Builds the same service as `twistd gamews` with its defaults; edit the
# options list to pass what you would give on the command line.
from twisted.application.service import Application

from gamews.tap import Options, makeService

options = Options()
options.parseOptions([])  # e.g. ["--config", "gamews.toml"]

application = Application("gamews")
makeService(options).setServiceParent(application)
