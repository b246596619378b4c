"""``python -m gamews new-plugin NAME``: write a ready plugin package to start from.

The package (in ``./NAME``, or ``--directory``) has a ``pyproject.toml`` with the
``gamews.plugins`` entry point, the plugin module with its settings declaration, the
``twisted/plugins/`` drop-in, a trial test using :mod:`gamews.testing` and a README::

    python -m gamews new-plugin killfeed
    pip install -e ./killfeed              # found through its entry point
    trial killfeed                         # its tests
    twistd -n gamews --config gamews.toml  # with plugins = ["killfeed"]
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template
from typing import Final

__all__ = ["check_name", "write_plugin"]

NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,30}")
"""What a new plugin's name may be (it is also its Python package's name)."""

RESERVED: Final = frozenset({"gamews", "twisted", "test", "tests", "echo", "chat", "live",
                             "console", "overlay", "bridge"})

_PYPROJECT: Final = Template('''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "gamews-$name"
version = "0.1.0"
description = "$Class: a gamews plugin."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["gamews"]

# how gamews finds the plugin with any kind of install, editable ones included
[project.entry-points."gamews.plugins"]
$name = "$name:$Class"

[tool.setuptools]
# twisted.plugins: the drop-in, for a plain install (no __init__.py in twisted/)
packages = ["$name", "$name.test", "twisted.plugins"]
''')

_MODULE: Final = Template('''\
"""$Class: a gamews plugin that sends every kill to browsers as it happens.

Browsers that open ``ws://HOST:8080/$name/ws`` (on every ``--listen`` port) get a
``hello`` frame, then one JSON frame per kill on any game server::

    {"type": "kill", "server": "alpha", "killer": "Sarge", "victim": "Grism",
     "weapon": "ak47", "headshot": true}

Settings, in gamews's config file (every key optional)::

    [plugin.$name]
    path = "/$name/ws"       # where browsers connect
    headshots_only = false   # send headshot kills only
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from gamews.api import (
    ConfigError,
    Envelope,
    IConnection,
    IGamewsPlugin,
    IListener,
    IPluginContext,
    Kill,
    Subscription,
    setting,
)

__all__ = ["$Class", "${Base}Service", "${Base}Settings"]


@dataclass(frozen=True)
class ${Base}Settings:
    """The ``[plugin.$name]`` table, checked by gamews before anything starts."""

    path: str = setting("/$name/ws")
    headshots_only: bool = setting(False)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ConfigError("path", "must start with /")


class ${Base}Service(Service):
    """Listens for browsers; sends them the kills of every game server."""

    def __init__(self, context: IPluginContext) -> None:
        self.context = context
        self.settings: ${Base}Settings = context.settings
        self.listener: IListener | None = None
        self.subscription: Subscription | None = None

    def startService(self) -> None:
        super().startService()
        # no endpoint= given: the path is served on every --listen port
        self.listener = self.context.open(self.settings.path, incoming=self.incoming)
        self.subscription = self.context.events.subscribe(self.event, name="$name")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.subscription is not None:
            self.subscription.cancel()
        listener, self.listener = self.listener, None
        return listener.close() if listener is not None else succeed(None)

    def incoming(self, child: IConnection) -> None:
        """Hold every browser that asks, and put it in the "kills" channel."""
        assert self.listener is not None
        child.hook(on_open=self.opened)
        self.listener.channel("kills").subscribe(child)

    def opened(self, child: IConnection) -> None:
        child.send_text(json.dumps({"type": "hello", "plugin": "$name"}))

    def event(self, envelope: Envelope) -> None:
        """Every game event: kills go to the browsers (encoded once for all of them)."""
        kill = envelope.event
        if self.listener is None or not isinstance(kill, Kill):
            return
        if self.settings.headshots_only and not kill.headshot:
            return
        self.listener.channel("kills").publish(json.dumps({
            "type": "kill", "server": envelope.server, "killer": kill.killer.name,
            "victim": kill.victim.name, "weapon": kill.weapon, "headshot": kill.headshot,
        }))


@implementer(IGamewsPlugin)
class $Class:
    """The plugin object gamews finds (entry point and ``twisted/plugins/``)."""

    name = "$name"
    description = "Sends every kill to browsers as it happens."
    settings_type = ${Base}Settings

    def make_service(self, context: IPluginContext) -> IService:
        return ${Base}Service(context)
''')

_DROPIN: Final = Template('''\
"""Twisted's plugin system finds $name here (a plain ``pip install``)."""

from $name import $Class

$name = $Class()
''')

_TEST: Final = Template('''\
"""$Class's tests: the plugin on gamews.testing's memory reactor, no sockets."""

from twisted.trial.unittest import SynchronousTestCase

from gamews.api import ConfigError, Kill, Player
from gamews.testing import PluginTestContext
from $name import $Class

SARGE = Player("Sarge", "bot:2", 2, "CT", bot=True)
GRISM = Player("Grism", "[U:1:1234]", 3, "TERRORIST")


class ${Base}Tests(SynchronousTestCase):
    """Kills reach the browsers; settings are checked."""

    def start(self, **settings: object) -> PluginTestContext:
        context = PluginTestContext.for_plugin($Class(), settings)
        self.game = context.add_server("alpha")
        service = $Class().make_service(context)
        service.startService()
        self.addCleanup(service.stopService)
        return context

    def test_kills_reach_browsers(self) -> None:
        """A browser gets hello, then each kill as JSON."""
        browser = self.start().connect("/$name/ws")
        self.game.feed(Kill(SARGE, GRISM, "ak47", headshot=True))
        self.assertEqual(browser.sent, [
            {"type": "hello", "plugin": "$name"},
            {"type": "kill", "server": "alpha", "killer": "Sarge", "victim": "Grism",
             "weapon": "ak47", "headshot": True},
        ])

    def test_headshots_only(self) -> None:
        """With headshots_only, other kills are not sent."""
        browser = self.start(headshots_only=True).connect("/$name/ws")
        self.game.feed(Kill(SARGE, GRISM, "ak47"), Kill(GRISM, SARGE, "awp", headshot=True))
        self.assertEqual([f.get("killer") for f in browser.of_type("kill")], ["Grism"])

    def test_bad_setting(self) -> None:
        """A bad setting is a ConfigError naming its key in full."""
        with self.assertRaises(ConfigError) as raised:
            self.start(path="kills")
        self.assertEqual(raised.exception.key, "plugin.$name.path")
''')

_README: Final = Template('''\
# gamews-$name

A gamews plugin: `$name` sends every kill to browsers
as it happens, on `ws://HOST:8080/$name/ws` (every `--listen` port).

```sh
pip install -e .                 # found through the gamews.plugins entry point
trial $name                      # the tests (gamews.testing: no sockets, no real time)
twistd -n gamews --config gamews.toml
```

with, in `gamews.toml`:

```toml
plugins = ["echo", "$name"]

[plugin.$name]
path = "/$name/ws"       # where browsers connect
headshots_only = false   # send headshot kills only
```

A bad setting stops gamews at start with one line naming the key
(`plugin.$name.path: must start with /`).

Layout: `$name/__init__.py` (the plugin, its settings and its service),
`twisted/plugins/${name}_gamews.py` (the drop-in Twisted's plugin system finds after a plain
`pip install .`), `$name/test/` (trial tests), `pyproject.toml` (the entry point).
Everything the plugin imports from gamews comes from `gamews.api`; see gamews's plugin
guide (`docs/plugins.md`) and its API reference.
''')


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a new plugin's name, or ``None`` when it can."""
    if not NAME.fullmatch(name):
        return "use 1 to 31 of a-z, 0-9 and _, starting with a letter"
    if keyword.iskeyword(name) or name in RESERVED:
        return "that name is taken"
    return None


def _base_name(name: str) -> str:
    """``kill_feed`` -> ``KillFeed``: the start of the package's class names."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write plugin package ``name`` into ``directory`` (which must not exist yet);
    return the files written. Raises ``ValueError`` for a bad name or an existing
    directory."""
    why = check_name(name)
    if why is not None:
        raise ValueError(f"{name!r}: {why}")
    if directory.exists():
        raise ValueError(f"{directory} already exists")
    base = _base_name(name)
    words = {"name": name, "Base": base, "Class": f"{base}Plugin"}
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"{name}/__init__.py": _MODULE,
        f"{name}/test/__init__.py": Template(""),
        f"{name}/test/test_{name}.py": _TEST,
        f"twisted/plugins/{name}_gamews.py": _DROPIN,
    }
    written = []
    for relative, template in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(words), encoding="utf-8")
        written.append(path)
    return written
