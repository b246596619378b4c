"""Plugins found however installed: Twisted's plugin system, the ``gamews.plugins`` entry
points (editable installs), a helpful error otherwise; the README's plugin on two ports."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, cast
from unittest import mock

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from gamews import discovery
from gamews.api import IGamewsPlugin, IPluginContext
from gamews.errors import ConfigError
from tests.support import REPO, can_connect, connect, free_port, poll_until, spawn_twistd


@implementer(IGamewsPlugin)
class SamplePlugin:
    """A plugin an entry point names by its class."""

    name = "sample"
    description = "A sample."
    settings_type = None

    def make_service(self, context: IPluginContext) -> Any:
        raise NotImplementedError


SAMPLE = SamplePlugin()


class NotAPlugin:
    """What an entry point of another group might name."""


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, discovery.ENTRY_POINT_GROUP)


class EntryPointTests(SynchronousTestCase):
    """The gamews.plugins group: instances or classes; broken ones logged and skipped."""

    def found_with(self, *entries: EntryPoint) -> tuple[dict[str, Any], list[LogEvent]]:
        logged: list[LogEvent] = []
        observer = cast(ILogObserver, logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        with mock.patch.object(discovery, "entry_points", lambda group: list(entries)):
            return discovery.available_plugins(), logged

    def test_instances_and_classes(self) -> None:
        """An entry point may name the plugin object or its class; both are found."""
        found, _ = self.found_with(entry("sample", "tests.test_discovery:SamplePlugin"))
        self.assertIsInstance(found["sample"], SamplePlugin)
        found, _ = self.found_with(entry("sample", "tests.test_discovery:SAMPLE"))
        self.assertIs(found["sample"], SAMPLE)
        self.assertIn("echo", found)  # the twisted/plugins ones are still there

    def test_broken_entry_points_skipped(self) -> None:
        """An entry point that fails to import or is no plugin is logged; the rest go on."""
        found, logged = self.found_with(entry("gone", "no_such_module_xyz:Plugin"),
                                        entry("notplugin", "tests.test_discovery:NotAPlugin"),
                                        entry("sample", "tests.test_discovery:SAMPLE"))
        self.assertEqual(set(found) & {"gone", "notplugin", "sample"}, {"sample"})
        text = " ".join(str(e.get("log_format")) for e in logged)
        self.assertIn("cannot load gamews plugin entry point", text)
        self.assertIn("is not a gamews plugin", text)
        self.flushLoggedErrors(ModuleNotFoundError)

    def test_twisted_plugin_wins_over_entry_point(self) -> None:
        """A name found both ways keeps the Twisted plugin (the same package, found twice)."""
        found, _ = self.found_with(entry("echo", "tests.test_discovery:SamplePlugin"))
        self.assertNotIsInstance(found["echo"], SamplePlugin)

    def test_not_found_names_installed_and_both_ways(self) -> None:
        """A missing plugin's error lists the installed ones and both ways of installing."""
        with self.assertRaises(ConfigError) as raised:
            discovery.select_plugins(("echo", "killfeed"), {"echo": SAMPLE, "chat": SAMPLE})
        message = str(raised.exception)
        self.assertIn("no plugin named 'killfeed' is installed (installed: chat, echo)",
                      message)
        self.assertIn("twisted/plugins/", message)
        self.assertIn("'gamews.plugins' entry-point group", message)
        self.assertEqual(raised.exception.key, "plugins")


PLUGIN_MODULE = '''
from twisted.application.service import Service
from zope.interface import implementer
from gamews.api import IGamewsPlugin


class _Service(Service):
    def __init__(self, context):
        self.context = context

    def startService(self):
        Service.startService(self)
        self.listener = self.context.open("/{name}", incoming=self.incoming)

    def stopService(self):
        Service.stopService(self)
        return self.listener.close()

    def incoming(self, child):
        child.hook(on_message=lambda c, text: c.send_text("{name}:" + text))


@implementer(IGamewsPlugin)
class Plugin:
    name = "{name}"
    description = "Answers with its name."

    def make_service(self, context):
        return _Service(context)
'''


def write_package(root: Path, name: str, *, entry_point: bool) -> Path:
    """A third-party plugin package ``name`` in ``root/name``: its module, a
    ``twisted/plugins/`` drop-in, and (if ``entry_point``) a ``gamews.plugins`` entry."""
    package = root / name
    (package / name).mkdir(parents=True)
    (package / name / "__init__.py").write_text(PLUGIN_MODULE.replace("{name}", name))
    (package / "twisted" / "plugins").mkdir(parents=True)
    (package / "twisted" / "plugins" / f"{name}_gamews.py").write_text(
        f"from {name} import Plugin\n{name} = Plugin()\n")
    entry_points = (f'[project.entry-points."gamews.plugins"]\n{name} = "{name}:Plugin"\n'
                    if entry_point else "")
    (package / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1.0"

        [tool.setuptools]
        packages = ["{name}", "twisted.plugins"]
        """) + entry_points)
    return package


async def pip_install(case: TestCase, *args: str) -> None:
    """``pip install`` offline, without dependencies (gamews is already importable)."""
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                         "--no-index", "--disable-pip-version-check", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": case.mktemp()}, path=str(REPO))
    case.assertEqual(code, 0, (out + err).decode(errors="replace"))


PROBE = """
import json, site, sys
for directory in sys.argv[1:]:
    site.addsitedir(directory)
from twisted.plugin import getPlugins
from gamews.api import IGamewsPlugin
from gamews.discovery import available_plugins
print(json.dumps({"twisted": sorted(p.name for p in getPlugins(IGamewsPlugin)),
                  "found": sorted(available_plugins())}))
"""


async def probe(case: TestCase, *site_dirs: str, pythonpath: str = "") -> dict[str, list[str]]:
    """What a fresh process finds: through Twisted's plugin system, and in all."""
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-c", PROBE, *site_dirs],
        env={"PYTHONPATH": ":".join(p for p in (pythonpath, str(REPO)) if p)}, path=str(REPO))
    case.assertEqual(code, 0, err.decode(errors="replace"))
    result: dict[str, list[str]] = json.loads(out)
    return result


class InstalledPackageTests(TestCase):
    """Real third-party packages, installed into temporary directories (never the venv)."""

    timeout = 120

    async def serve(self, name: str, site_dir: str) -> None:
        """``twistd gamews`` with the plugin installed in ``site_dir`` answers on /NAME."""
        port = free_port()
        config = Path(self.mktemp()).resolve()
        config.write_text(f'plugins = ["{name}"]\n')
        process = spawn_twistd(
            ["-n", "gamews", "--listen", f"tcp:{port}:interface=127.0.0.1",
             "--config", str(config)],
            prelude=f"import site; site.addsitedir({site_dir!r})")

        async def stop() -> None:
            process.signal("KILL")
            await process.ended

        self.addCleanup(stop)
        await poll_until(lambda: can_connect(port) or process.ended.called, timeout=20)
        self.assertFalse(process.ended.called, process.errors.decode(errors="replace"))
        client = await connect(port, f"/{name}")
        client.send_text("gg")
        self.assertEqual(await client.wait_messages(1), [f"{name}:gg"])
        client.sendClose()
        await client.closed

    def test_editable_install_found_through_entry_point(self) -> Deferred[None]:
        """``pip install -e`` (setuptools' default editable mode): Twisted's plugin system
        misses the package's drop-in; the entry point finds it and twistd runs it."""
        root = Path(self.mktemp()).resolve()
        package = write_package(root, "kfeditable", entry_point=True)
        prefix = root / "prefix"

        async def run() -> None:
            await pip_install(self, "--prefix", str(prefix), "-e", str(package))
            site_dir = str(next(prefix.glob("lib/python*/site-packages")))
            found = await probe(self, site_dir)
            self.assertNotIn("kfeditable", found["twisted"])
            self.assertIn("kfeditable", found["found"])
            await self.serve("kfeditable", site_dir)

        return ensureDeferred(run())

    def test_plain_install_found_through_twisted_plugins(self) -> Deferred[None]:
        """A plain install without an entry point is found through ``twisted/plugins/``."""
        root = Path(self.mktemp()).resolve()
        package = write_package(root, "kfplain", entry_point=False)
        target = root / "target"

        async def run() -> None:
            await pip_install(self, "--target", str(target), str(package))
            self.assertTrue((target / "twisted" / "plugins" / "kfplain_gamews.py").exists())
            found = await probe(self, pythonpath=str(target))
            self.assertIn("kfplain", found["twisted"])
            await self.serve("kfplain", str(target))

        return ensureDeferred(run())


def readme_files() -> dict[str, str]:
    """The README's minimal plugin: each code block whose first line is ``# PATH``."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The plugin API"):]
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", section, re.DOTALL):
        first = block.partition("\n")[0]
        m = re.fullmatch(r"# (\S+)(?:\s.*)?", first)
        if m is not None and m[1] not in files:
            files[m[1]] = block
    return files


class ReadmePluginTests(TestCase):
    """The README's minimal plugin, copied into a fresh package, serves every --listen port."""

    timeout = 60

    def test_readme_plugin_on_two_ports(self) -> Deferred[None]:
        """Both ``--listen`` ports answer on the plugin's path."""
        files = readme_files()
        self.assertIn("shout_plugin/__init__.py", files)
        self.assertIn("twisted/plugins/shout_gamews.py", files)
        root = Path(self.mktemp()).resolve()
        for path, body in files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(body)
        config = root / "gamews.toml"
        config.write_text('plugins = ["shout"]\n')
        ports = [free_port(), free_port()]
        process = spawn_twistd(["-n", "gamews", "--config", str(config),
                                *(a for p in ports
                                  for a in ("--listen", f"tcp:{p}:interface=127.0.0.1"))],
                               pythonpath=[str(root)])

        async def stop() -> None:
            process.signal("KILL")
            await process.ended

        async def run() -> None:
            self.addCleanup(stop)
            await poll_until(lambda: all(can_connect(p) for p in ports) or process.ended.called,
                             timeout=20)
            self.assertFalse(process.ended.called, process.output.decode(errors="replace"))
            for port in ports:
                client = await connect(port, "/shout")
                client.send_text(f"gg on {port}")
                self.assertEqual(await client.wait_messages(1), [f"GG ON {port}"])
                client.sendClose()
                await client.closed

        return ensureDeferred(run())
