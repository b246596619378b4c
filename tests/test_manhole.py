"""Tests for :mod:`gamews.manhole`: config, credentials, host key, redaction, and
real SSH sessions with Debian's OpenSSH client over loopback."""

from __future__ import annotations

import io
import os
import re
import stat
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService
from twisted.conch.checkers import IAuthorizedKeysDB
from twisted.conch.ssh import keys
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.testing import MemoryReactor
from twisted.internet.utils import getProcessOutput
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from gamews.config import GamewsConfig
from gamews.endpoints import is_loopback_endpoint
from gamews.errors import ConfigError
from gamews.manhole import (
    DEFAULT_ENDPOINT,
    REDACTED,
    AuthorizedKeys,
    ManholeConfig,
    ManholeService,
    ScryptPasswordChecker,
    default_banner,
    hash_password,
    load_authorized_keys,
    load_host_key,
    load_password_file,
    main,
    make_manhole_service,
    redact_config,
    service_namespace,
    verify_password,
)
from gamews.plugins.echo import EchoPlugin
from gamews.secret import Secret
from gamews.service import GamewsService
from gamews.settings import PluginSettings, Settings
from tests.sshclient import (
    END_MARK,
    SSHResult,
    make_client_key,
    run_ssh_shell,
    ssh_keyscan,
    ssh_program,
    start_ssh,
)
from tests.support import can_connect, connect, free_port, poll_until, spawn_twistd

reactor: Any = _global_reactor
LOOPBACK_ANY_PORT = "tcp:0:interface=127.0.0.1"


def _tmp(case: SynchronousTestCase) -> Path:
    path = Path(case.mktemp()).resolve()
    path.mkdir(parents=True)
    return path


def _results(output: bytes, tag: str) -> list[str]:
    """The values printed for ``(tag, VALUE)`` tuples, in order (the input echo
    uses double quotes and colour codes, so it never matches)."""
    return re.findall(rf"^\('{tag}', (.*)\)\r?$", output.decode("utf-8", "replace"), re.M)


class _Logs:
    """Collects log events while installed (for checking warnings)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        observer = implementer(ILogObserver)(_Observer)(self.events)
        globalLogPublisher.addObserver(observer)
        case.addCleanup(globalLogPublisher.removeObserver, observer)

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


class _Observer:
    def __init__(self, events: list[LogEvent]) -> None:
        self.events = events

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)


# -- configuration ---------------------------------------------------------------------


class ConfigTests(SynchronousTestCase):
    """``ManholeConfig.from_table`` and endpoint checks."""

    def test_defaults_loopback_and_paths_from_base_dir(self) -> None:
        """The default endpoint is loopback; relative paths resolve against base_dir."""
        base = Path("/srv/gamews")
        config = ManholeConfig.from_table({"authorized_keys": "keys"}, base_dir=base)
        self.assertEqual(config.endpoint, DEFAULT_ENDPOINT)
        self.assertEqual(DEFAULT_ENDPOINT, "tcp:2222:interface=127.0.0.1")
        self.assertEqual(config.authorized_keys, base / "keys")
        self.assertIsNone(config.password_file)
        self.assertEqual(config.data_dir, base / "gamews-data")
        self.assertEqual(config.host_key_path.parent, base / "gamews-data")

    def test_all_keys(self) -> None:
        """Every key of the table is read; absolute paths stay as given."""
        config = ManholeConfig.from_table(
            {"endpoint": "tcp:2200:interface=::1", "password_file": "/etc/pw",
             "data_dir": "state"}, base_dir=Path("/b"))
        self.assertEqual(config, ManholeConfig(endpoint="tcp:2200:interface=::1",
                                               password_file=Path("/etc/pw"),
                                               data_dir=Path("/b/state")))

    def test_no_credentials_is_refused(self) -> None:
        """A table without credentials fails with the one-line message, never a default."""
        error = self.assertRaises(ConfigError, ManholeConfig.from_table, {}, base_dir=None)
        self.assertEqual(str(error),
                         "manhole: no credentials configured: set authorized_keys or "
                         "password_file")
        self.assertNotIn("\n", str(error))
        self.assertRaises(ConfigError, ManholeConfig)

    def test_unknown_key(self) -> None:
        """An unknown key is named in the error."""
        error = self.assertRaises(ConfigError, ManholeConfig.from_table,
                                  {"authorized_keys": "k", "pasword_file": "x"}, base_dir=None)
        self.assertEqual(error.key, "manhole.pasword_file")

    def test_bad_values(self) -> None:
        """Wrong types and malformed endpoints name their key."""
        cases: list[tuple[dict[str, object], str]] = [
            ({"authorized_keys": 3}, "manhole.authorized_keys"),
            ({"authorized_keys": ""}, "manhole.authorized_keys"),
            ({"authorized_keys": "k", "endpoint": True}, "manhole.endpoint"),
            ({"authorized_keys": "k", "endpoint": "tcp:notaport"}, "manhole.endpoint"),
            ({"authorized_keys": "k", "data_dir": ["x"]}, "manhole.data_dir"),
        ]
        for table, key in cases:
            error = self.assertRaises(ConfigError, ManholeConfig.from_table, table,
                                      base_dir=None)
            self.assertEqual(error.key, key, table)

    def test_bare_port_is_loopback(self) -> None:
        """``endpoint = 9022`` or ``"9022"`` (and so ``--manhole 9022``) is that port on
        loopback, as for ``--metrics``."""
        for value in (9022, "9022"):
            config = ManholeConfig.from_table({"authorized_keys": "k", "endpoint": value},
                                              base_dir=None)
            self.assertEqual(config.endpoint, "tcp:9022:interface=127.0.0.1")

    def test_loopback_detection(self) -> None:
        """Loopback and UNIX endpoints count as local; anything else does not."""
        for local in ("tcp:2222:interface=127.0.0.1", "tcp:2222:interface=127.0.0.2",
                      "tcp6:2222:interface=\\:\\:1", "tcp:port=2222:interface=localhost",
                      "unix:/tmp/manhole.sock"):
            self.assertTrue(is_loopback_endpoint(local), local)
        for exposed in ("tcp:2222", "tcp:2222:interface=0.0.0.0", "tcp6:2222",
                        "tcp:2222:interface=192.0.2.7"):
            self.assertFalse(is_loopback_endpoint(exposed), exposed)


# -- credentials files --------------------------------------------------------------------


class PasswordTests(SynchronousTestCase):
    """scrypt hashes, the password file and ``hash-password``."""

    def test_hash_round_trip(self) -> None:
        """A hash verifies its password only, is salted, and holds no plain text."""
        first, second = hash_password("correct horse"), hash_password("correct horse")
        self.assertTrue(first.startswith("scrypt$ln=14,r=8,p=1$"))
        self.assertNotEqual(first, second)
        self.assertNotIn("correct", first)
        self.assertTrue(verify_password("correct horse", first))
        self.assertTrue(verify_password(b"correct horse", second))
        self.assertFalse(verify_password("correct horsE", first))

    def test_password_file(self) -> None:
        """Comments and blank lines are skipped; each user maps to its hash."""
        path = _tmp(self) / "pw"
        encoded = hash_password("pw")
        path.write_text(f"# operators\n\nadmin:{encoded}\nops:{hash_password('x')}\n")
        users = load_password_file(path)
        self.assertEqual(sorted(users), [b"admin", b"ops"])
        self.assertEqual(users[b"admin"], encoded)

    def test_password_file_errors(self) -> None:
        """Plain-text or crypt entries, duplicates, empty or missing files are refused
        without echoing the line."""
        directory = _tmp(self)
        good = hash_password("pw")
        cases = {
            "plain": "admin:hunter2\n",
            "crypt": "admin:$apr1$abc$def\n",
            "nocolon": "admin\n",
            "twice": f"admin:{good}\nadmin:{good}\n",
            "empty": "# nobody\n",
            "badparams": "admin:scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ=$" + "a" * 44 + "\n",
        }
        for name, text in cases.items():
            path = directory / name
            path.write_text(text)
            error = self.assertRaises(ConfigError, load_password_file, path)
            self.assertEqual(error.key, "manhole.password_file", name)
            self.assertNotIn("hunter2", str(error))
        error = self.assertRaises(ConfigError, load_password_file, directory / "missing")
        self.assertIn("cannot read", str(error))

    def test_hash_password_command(self) -> None:
        """``python -m gamews.manhole hash-password USER`` prints a usable line."""
        out = io.StringIO()
        self.patch(sys, "stdin", io.StringIO("s3cret pass\n"))
        self.patch(sys, "stdout", out)
        self.assertEqual(main(["hash-password", "admin"]), 0)
        line = out.getvalue()
        self.assertTrue(line.startswith("admin:scrypt$"))
        path = _tmp(self) / "pw"
        path.write_text(line)
        self.assertTrue(verify_password("s3cret pass", load_password_file(path)[b"admin"]))

    def test_hash_password_command_refuses_empty(self) -> None:
        """An empty password is refused."""
        self.patch(sys, "stdin", io.StringIO("\n"))
        self.patch(sys, "stderr", io.StringIO())
        self.assertEqual(main(["hash-password", "admin"]), 1)


class CheckerTests(TestCase):
    """The scrypt ``twisted.cred`` checker."""

    @inlineCallbacks
    def test_checker(self) -> Generator[Deferred[Any], Any, None]:
        """The right password gives the user; a wrong one or an unknown user fails."""
        checker = ScryptPasswordChecker({b"admin": hash_password("pw")}, reactor)
        user = yield checker.requestAvatarId(UsernamePassword(b"admin", b"pw"))
        self.assertEqual(user, b"admin")
        for name, password in ((b"admin", b"PW"), (b"root", b"pw"), (b"admin", b"")):
            d = checker.requestAvatarId(UsernamePassword(name, password))
            yield self.assertFailure(d, UnauthorizedLogin)


class AuthorizedKeysTests(SynchronousTestCase):
    """Reading ``authorized_keys``."""

    def test_read(self) -> None:
        """Key lines (with comments) are read; the keys serve any user name."""
        directory = _tmp(self)
        _, line1 = make_client_key(directory, "a")
        _, line2 = make_client_key(directory, "b")
        path = directory / "authorized_keys"
        path.write_text(f"# ops\n{line1}\n\n{line2}\n")
        found = load_authorized_keys(path)
        self.assertEqual(len(found), 2)
        db = AuthorizedKeys(found)
        self.assertTrue(verifyObject(IAuthorizedKeysDB, db))
        self.assertEqual(list(db.getAuthorizedKeys(b"anyone")), found)

    def test_refused(self) -> None:
        """Options, private keys, garbage and empty files are refused with the line number."""
        directory = _tmp(self)
        private, line = make_client_key(directory)
        cases = {
            "options": f'from="10.0.0.1" {line}\n',
            "garbage": "ssh-ed25519 bm90IGEga2V5\n",
            "private": private.read_text(),
            "empty": "\n# none\n",
        }
        for name, text in cases.items():
            path = directory / name
            path.write_text(text)
            error = self.assertRaises(ConfigError, load_authorized_keys, path)
            self.assertEqual(error.key, "manhole.authorized_keys", name)

    def test_missing_file_fails_at_build(self) -> None:
        """A missing authorized_keys file fails when the service is built, naming the key."""
        directory = _tmp(self)
        config = ManholeConfig(authorized_keys=directory / "nope", data_dir=directory / "d")
        error = self.assertRaises(ConfigError, make_manhole_service, config, dict,
                                  reactor=MemoryReactor())
        self.assertEqual(error.key, "manhole.authorized_keys")


# -- the host key -------------------------------------------------------------------------


class HostKeyTests(SynchronousTestCase):
    """Host key generation and reuse (files only; the SSH view is in SSHTests)."""

    def test_created_0600_and_reused(self) -> None:
        """The first load writes an Ed25519 key 0600 (dir 0700); the next reads it back."""
        data_dir = _tmp(self) / "state" / "manhole"
        first = load_host_key(data_dir)
        path = data_dir / "manhole_host_ed25519_key"
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(data_dir.stat().st_mode), 0o700)
        self.assertEqual(first.sshType(), b"ssh-ed25519")
        second = load_host_key(data_dir)
        self.assertEqual(first.fingerprint(keys.FingerprintFormats.SHA256_BASE64),
                         second.fingerprint(keys.FingerprintFormats.SHA256_BASE64))
        public = keys.Key.fromString(path.with_name(path.name + ".pub").read_bytes())
        self.assertEqual(public, first.public())

    def test_readable_key_refused(self) -> None:
        """A host key others can read is refused, as OpenSSH does."""
        data_dir = _tmp(self)
        load_host_key(data_dir)
        os.chmod(data_dir / "manhole_host_ed25519_key", 0o644)
        error = self.assertRaises(ConfigError, load_host_key, data_dir)
        self.assertIn("chmod 600", str(error))

    def test_not_a_key_refused(self) -> None:
        """A host key file that is not a private key is refused."""
        data_dir = _tmp(self)
        path = data_dir / "manhole_host_ed25519_key"
        path.write_text("nonsense")
        path.chmod(0o600)
        self.assertRaises(ConfigError, load_host_key, data_dir)


# -- redaction ---------------------------------------------------------------------------


class RedactTests(SynchronousTestCase):
    """``redact_config``."""

    def test_secrets_and_secret_keys(self) -> None:
        """Secrets and *password/*secret/*token keys are replaced, at any depth."""
        tree = {
            "listen": ["tcp:8080"],
            "server": [{"name": "alpha", "rcon_password": "hunter2", "password_file": "/p",
                        "rcon": Secret("s3cret-rcon")}],
            "plugin": {"stats": {"API_TOKEN": "tok-123", "client_secret": "cs-9",
                                 "nested": ({"auth_token": "tok-456"},)}},
            "passwd": "not-a-suffix-match-but-redacted",
        }
        view = redact_config(tree)
        text = repr(view)
        for leaked in ("hunter2", "s3cret-rcon", "tok-123", "cs-9", "tok-456",
                       "not-a-suffix"):
            self.assertNotIn(leaked, text)
        view_d = cast(dict[str, Any], view)
        self.assertEqual(view_d["server"][0]["rcon_password"], REDACTED)
        self.assertEqual(view_d["server"][0]["rcon"], REDACTED)
        self.assertEqual(view_d["server"][0]["password_file"], "/p")
        self.assertEqual(view_d["listen"], ["tcp:8080"])
        self.assertIsInstance(view_d["plugin"]["stats"]["nested"], tuple)
        self.assertEqual(tree["server"][0]["rcon_password"], "hunter2")  # type: ignore[index]

    def test_dataclass_config(self) -> None:
        """A GamewsConfig becomes a dict of its fields with secrets redacted."""
        config = GamewsConfig(plugin_config={"echo": {"token": "t-1"}},
                              servers=({"name": "a", "password": Secret("p-1")},))
        view = cast(dict[str, Any], redact_config(config))
        self.assertEqual(view["plugin_config"]["echo"]["token"], REDACTED)
        self.assertEqual(view["servers"][0]["password"], REDACTED)
        self.assertEqual(view["websocket"]["max_connections"], 10_000)
        self.assertNotIn("t-1", repr(view))

    def test_cycle(self) -> None:
        """A self-referencing tree does not recurse forever."""
        tree: dict[str, Any] = {"a": 1}
        tree["self"] = tree
        self.assertEqual(redact_config(tree), {"a": 1, "self": "<cycle>"})


# -- the service without sockets --------------------------------------------------------------


class ServiceUnitTests(SynchronousTestCase):
    """The service on a memory reactor: listening, warning, key dicts."""

    def _config(self, endpoint: str) -> ManholeConfig:
        directory = _tmp(self)
        _, line = make_client_key(directory)
        (directory / "ak").write_text(line + "\n")
        return ManholeConfig(endpoint=endpoint, authorized_keys=directory / "ak",
                             data_dir=directory / "data")

    def test_warns_off_loopback(self) -> None:
        """Listening on every interface logs a warning; loopback does not."""
        logs = _Logs(self)
        memory = MemoryReactor()
        service = make_manhole_service(self._config("tcp:2222"), dict, reactor=memory)
        service.startService()
        self.assertEqual(memory.tcpServers[0][0], 2222)
        self.assertEqual(memory.tcpServers[0][3], "")
        self.assertTrue(any("not a loopback address" in t for t in logs.texts()))
        service.stopService()
        logs.events.clear()
        quiet = make_manhole_service(self._config(DEFAULT_ENDPOINT), dict, reactor=memory)
        quiet.startService()
        self.assertEqual(memory.tcpServers[1][3], "127.0.0.1")
        self.assertFalse(any("not a loopback address" in t for t in logs.texts()))
        quiet.stopService()

    def test_key_dicts_per_instance(self) -> None:
        """Two manholes keep their own host keys (ConchFactory's dicts are class-level)."""
        one = make_manhole_service(self._config(DEFAULT_ENDPOINT), dict, reactor=MemoryReactor())
        two = make_manhole_service(self._config(DEFAULT_ENDPOINT), dict, reactor=MemoryReactor())
        assert isinstance(one, ManholeService) and isinstance(two, ManholeService)
        self.assertTrue(verifyObject(IService, one))
        self.assertNotEqual(one.host_key_fingerprint, two.host_key_fingerprint)
        self.assertIsNot(one.factory.publicKeys, two.factory.publicKeys)
        self.assertEqual(one.host_key_fingerprint[:7], "SHA256:")

    def test_banner_lists_namespace(self) -> None:
        """The default banner lists each name with its docstring's first line."""

        def kick(child_id: int) -> bool:
            """kick(id): close one child."""
            return True

        banner = default_banner({"kick": kick, "registry": object(), "_hidden": 1})
        self.assertIn("kick()", banner)
        self.assertIn("kick(id): close one child.", banner)
        self.assertIn("registry", banner)
        self.assertNotIn("_hidden", banner)
        self.assertIn("Ctrl-D", banner)


# -- real SSH sessions ------------------------------------------------------------------------


class SSHTests(TestCase):
    """The manhole over loopback with Debian's OpenSSH client."""

    timeout = 90

    def setUp(self) -> None:
        self.dir = _tmp(self)
        self.home = self.dir / "home"
        self.home.mkdir()
        self.key, line = make_client_key(self.dir)
        self.authorized = self.dir / "authorized_keys"
        self.authorized.write_text(line + "\n")
        self.passwords = self.dir / "passwords"
        self.passwords.write_text(f"admin:{hash_password('open sesame')}\n")
        self.data_dir = self.dir / "data"
        self.state: dict[str, object] = {"probe": 20}
        self.extra: dict[str, object] = {}
        self.sessions = 0

    def namespace(self) -> dict[str, object]:
        """The test's namespace maker: counts sessions, exposes ``probe``."""
        self.sessions += 1
        return {"probe": self.state["probe"], "session": self.sessions, **self.extra}

    @inlineCallbacks
    def start(self, *, keys_file: bool = True, password_file: bool = True,
              ) -> Generator[Deferred[Any], Any, int]:
        """Start a manhole on an ephemeral loopback port; return the port."""
        config = ManholeConfig(
            endpoint=LOOPBACK_ANY_PORT,
            authorized_keys=self.authorized if keys_file else None,
            password_file=self.passwords if password_file else None,
            data_dir=self.data_dir,
        )
        service = make_manhole_service(config, self.namespace, reactor=reactor)
        assert isinstance(service, ManholeService)
        self.service = service
        service.startService()
        self.addCleanup(service.stopService)
        address = yield service.when_listening()
        port: int = address.port
        return port

    def assert_logged_in(self, result: SSHResult) -> None:
        self.assertFalse(result.timed_out, result)
        self.assertEqual(result.exit_code, 0, result)
        self.assertIn(b"gamews manhole", result.stdout)

    def assert_refused(self, result: SSHResult) -> None:
        self.assertFalse(result.timed_out, result)
        self.assertEqual(result.exit_code, 255, result)
        self.assertIn(b"Permission denied", result.stderr)
        self.assertNotIn(b">>> ", result.stdout)

    @inlineCallbacks
    def test_key_login_per_session_live_namespace(self) -> Generator[Deferred[Any], Any, None]:
        """A key login evaluates against a namespace built afresh for each session."""
        port = yield self.start()
        first = yield run_ssh_shell(reactor, port, ['("v", probe * 2, session)'],
                                    home=self.home, key=self.key)
        self.assert_logged_in(first)
        self.assertEqual(_results(first.stdout, "v"), ["40, 1"])
        self.state["probe"] = 21
        second = yield run_ssh_shell(reactor, port, ['("v", probe * 2, session)'],
                                     home=self.home, key=self.key, user="someone-else")
        self.assert_logged_in(second)
        self.assertEqual(_results(second.stdout, "v"), ["42, 2"])

    @inlineCallbacks
    def test_errors_stay_in_the_shell(self) -> Generator[Deferred[Any], Any, None]:
        """Exceptions, exit() and SystemExit are reported in the shell, which goes on."""
        port = yield self.start()
        lines = ["1/0", "undefined_name", "exit()", "raise SystemExit(3)", "def broken(:",
                 '("after", probe + 1)']
        result = yield run_ssh_shell(reactor, port, lines, home=self.home, key=self.key)
        self.assert_logged_in(result)
        out = result.stdout.decode("utf-8", "replace")
        self.assertIn("ZeroDivisionError", out)
        self.assertIn("NameError", out)
        self.assertIn("SystemExit ignored", out)
        self.assertIn("SyntaxError", out)
        self.assertEqual(_results(result.stdout, "after"), ["21"])
        self.assertTrue(self.service.running)
        again = yield run_ssh_shell(reactor, port, ['("alive", 1)'], home=self.home,
                                    key=self.key)
        self.assertEqual(_results(again.stdout, "alive"), ["1"])

    @inlineCallbacks
    def test_deferred_display_and_eof(self) -> Generator[Deferred[Any], Any, None]:
        """A Deferred typed at the prompt shows its result when it fires; EOF ends the session."""
        pending: Deferred[str] = Deferred()
        self.extra["pending"] = pending
        port = yield self.start()
        ssh = start_ssh(reactor, port, ["pending"], home=self.home, key=self.key,
                        leave_at_end=False)
        yield ssh.wait_for(b"<Deferred #0>")
        pending.callback("pong")
        yield ssh.wait_for(b"Deferred #0 called back: 'pong'")
        ssh.close_stdin()
        result = yield ssh.finished
        self.assertEqual(result.exit_code, 0, result)

    @inlineCallbacks
    def test_stop_disconnects_sessions(self) -> Generator[Deferred[Any], Any, None]:
        """Stopping the manhole closes open sessions and fires once they are gone."""
        port = yield self.start()
        ssh = start_ssh(reactor, port, [], home=self.home, key=self.key, leave_at_end=False)
        yield ssh.wait_for(END_MARK)
        yield self.service.stopService()
        result = yield ssh.finished
        self.assertFalse(result.timed_out, result)
        self.assertIsNotNone(result.exit_code)
        self.assertFalse(self.service.running)

    @inlineCallbacks
    def test_broken_namespace_still_gives_a_shell(self) -> Generator[Deferred[Any], Any,
                                                                      None]:
        """A namespace maker that raises is logged; the session still gets a shell."""
        def broken() -> dict[str, object]:
            raise RuntimeError("registry on fire")

        self.patch(self, "namespace", broken)
        port = yield self.start()
        result = yield run_ssh_shell(reactor, port, ['("err", namespace_error)'],
                                     home=self.home, key=self.key)
        self.assert_logged_in(result)
        self.assertEqual(_results(result.stdout, "err"), ["'RuntimeError: registry on fire'"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @inlineCallbacks
    def test_wrong_key_refused(self) -> Generator[Deferred[Any], Any, None]:
        """A key not in authorized_keys is refused."""
        port = yield self.start(password_file=False)
        stranger, _ = make_client_key(self.dir, "stranger")
        result = yield run_ssh_shell(reactor, port, ["1"], home=self.home, key=stranger)
        self.assert_refused(result)
        self.assertEqual(self.sessions, 0)

    @inlineCallbacks
    def test_password_login(self) -> Generator[Deferred[Any], Any, None]:
        """A user from the password file logs in with the right password."""
        port = yield self.start(keys_file=False)
        result = yield run_ssh_shell(reactor, port, ['("pw", probe)'], home=self.home,
                                     user="admin", password="open sesame")
        self.assert_logged_in(result)
        self.assertEqual(_results(result.stdout, "pw"), ["20"])

    @inlineCallbacks
    def test_wrong_password_refused(self) -> Generator[Deferred[Any], Any, None]:
        """A wrong password, or an unknown user, is refused."""
        port = yield self.start(keys_file=False)
        wrong = yield run_ssh_shell(reactor, port, ["1"], home=self.home, user="admin",
                                    password="open sesame!")
        self.assert_refused(wrong)
        unknown = yield run_ssh_shell(reactor, port, ["1"], home=self.home, user="root",
                                      password="open sesame")
        self.assert_refused(unknown)
        self.assertEqual(self.sessions, 0)

    @inlineCallbacks
    def test_key_only_refuses_passwords(self) -> Generator[Deferred[Any], Any, None]:
        """With only authorized_keys configured, password logins are not offered."""
        port = yield self.start(password_file=False)
        result = yield run_ssh_shell(reactor, port, ["1"], home=self.home, user="admin",
                                     password="open sesame")
        self.assert_refused(result)
        self.assertIn(b"(publickey)", result.stderr)

    @inlineCallbacks
    def test_commands_refused(self) -> Generator[Deferred[Any], Any, None]:
        """``ssh host COMMAND`` gets a message and exit status 1, not a traceback."""
        port = yield self.start()
        result = yield run_ssh_shell(reactor, port, [], home=self.home, key=self.key,
                                     command="1+1")
        self.assertEqual(result.exit_code, 1, result)
        self.assertIn(b"commands are not supported", result.stdout)

    @inlineCallbacks
    def test_host_key_created_and_reused(self) -> Generator[Deferred[Any], Any, None]:
        """The host key is created 0600 and the restarted manhole serves the same key."""
        port = yield self.start()
        path = self.data_dir / "manhole_host_ed25519_key"
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        first = yield ssh_keyscan(reactor, port)
        self.assertEqual(first.exit_code, 0, first)
        served = keys.Key.fromString(first.stdout.split(None, 1)[1].strip())
        self.assertEqual(served, keys.Key.fromFile(str(path)).public())
        fingerprint = self.service.host_key_fingerprint
        scanned = self.dir / "scanned"
        scanned.write_bytes(first.stdout)
        listed = yield getProcessOutput(ssh_program("ssh-keygen"), ["-l", "-f", str(scanned)],
                                        env={}, reactor=reactor)
        self.assertEqual(listed.split()[1].decode(), fingerprint)  # as ssh shows it
        yield self.service.stopService()
        port = yield self.start()
        second = yield ssh_keyscan(reactor, port)
        again = keys.Key.fromString(second.stdout.split(None, 1)[1].strip())
        self.assertEqual(again, served)
        self.assertEqual(self.service.host_key_fingerprint, fingerprint)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)


# -- with the real gamews service ------------------------------------------------------------


class GamewsIntegrationTests(TestCase):
    """The manhole inside a running gamews service, seen over SSH."""

    timeout = 90

    @inlineCallbacks
    def test_counts_open_websockets(self) -> Generator[Deferred[Any], Any, None]:
        """With one WebSocket client connected, the manhole counts 1 open connection and
        shows the config without its secrets."""
        directory = _tmp(self)
        home = directory / "home"
        home.mkdir()
        key, line = make_client_key(directory)
        (directory / "authorized_keys").write_text(line + "\n")
        config = GamewsConfig(
            listen=(LOOPBACK_ANY_PORT,),
            plugin_config={"echo": {"path": "/echo", "api_token": "tok-SECRET-1",
                                    "rcon_password": "hunter2-SECRET-2",
                                    "rcon": Secret("SECRET-3")}},
        )
        gamews = GamewsService(Settings(config, (PluginSettings.of(EchoPlugin()),)),
                               reactor=reactor)
        manhole = make_manhole_service(
            ManholeConfig(endpoint=LOOPBACK_ANY_PORT,
                          authorized_keys=directory / "authorized_keys",
                          data_dir=directory / "data"),
            service_namespace(gamews), reactor=reactor)
        manhole.setServiceParent(gamews)
        gamews.startService()
        self.addCleanup(gamews.stopService)
        assert isinstance(manhole, ManholeService)
        web = yield gamews.registry.ports()[0].when_listening()
        ssh = yield manhole.when_listening()

        client = yield Deferred.fromCoroutine(connect(web.port, "/echo"))
        lines = [
            '("open", len([c for c in connections() if c["state"] == "OPEN"]))',
            '("paths", [c["path"] for c in connections()])',
            '("plugins", sorted(plugins))',
            '("ports", [p["paths"] for p in ports()])',
            '("index", "/" in ports()[0]["pages"])',
            '("kick", kick(-1))',
            '("broadcast", broadcast("/echo", "hello from the manhole"))',
            "config",
            "tree()",
        ]
        result = yield run_ssh_shell(reactor, ssh.port, lines, home=home, key=key)
        self.assertEqual(result.exit_code, 0, result)
        self.assertEqual(_results(result.stdout, "open"), ["1"])
        self.assertEqual(_results(result.stdout, "paths"), ["['/echo']"])
        self.assertEqual(_results(result.stdout, "plugins"), ["['echo']"])
        self.assertEqual(_results(result.stdout, "ports"),
                         ["[{'/echo': {'plugins': ['echo'], 'children': 1}}]"])
        self.assertEqual(_results(result.stdout, "index"), ["True"])
        self.assertEqual(_results(result.stdout, "kick"), ["False"])
        self.assertEqual(_results(result.stdout, "broadcast"), ["1"])
        self.assertEqual((yield client.wait_messages(1)), ["hello from the manhole"])
        out = result.stdout.decode("utf-8", "replace")
        self.assertIn("'rcon_password': '<redacted>'", out)
        self.assertIn("'api_token': '<redacted>'", out)
        self.assertNotIn("SECRET", out)
        self.assertIn("manhole (running)", out)
        client.sendClose()
        yield client.closed


class TwistdManholeTests(TestCase):
    """``twistd -n gamews --manhole ...`` as a real process, reached by ssh."""

    timeout = 90

    @inlineCallbacks
    def test_twistd_manhole_counts_websockets(self) -> Generator[Deferred[Any], Any, None]:
        """The manhole of a running twistd gamews counts its one open WebSocket."""
        directory = _tmp(self)
        home = directory / "home"
        home.mkdir()
        key, line = make_client_key(directory)
        (directory / "keys").write_text(line + "\n")
        config = directory / "gamews.toml"
        config.write_text('plugins = ["echo"]\ndemo = false\n\n'
                          '[manhole]\nauthorized_keys = "keys"\ndata_dir = "state"\n')
        web, ssh = free_port(), free_port()
        process = spawn_twistd(["-n", "gamews", "--config", str(config),
                                "--listen", f"tcp:{web}:interface=127.0.0.1",
                                "--manhole", f"tcp:{ssh}:interface=127.0.0.1"])

        @inlineCallbacks
        def stop() -> Generator[Deferred[Any], Any, None]:
            process.signal("KILL")
            yield process.ended

        self.addCleanup(stop)
        yield poll_until(lambda: (can_connect(web) and can_connect(ssh))
                         or process.ended.called, timeout=20)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))
        client = yield Deferred.fromCoroutine(connect(web, "/echo"))
        lines = ['("open", len([c for c in connections() if c["state"] == "OPEN"]))',
                 '("names", [n for n in ("servers", "events", "rcon") if n in globals()])']
        result = yield run_ssh_shell(reactor, ssh, lines, home=home, key=key)
        self.assertEqual(result.exit_code, 0, result)
        self.assertEqual(_results(result.stdout, "open"), ["1"])
        self.assertEqual(_results(result.stdout, "names"), ["['servers', 'events', 'rcon']"])
        key_file = directory / "state" / "manhole_host_ed25519_key"
        self.assertEqual(stat.S_IMODE(key_file.stat().st_mode), 0o600)
        client.sendClose()
        yield client.closed
        process.signal("TERM")
        yield process.ended
        self.assertTrue(process.stopped_cleanly(), process.output.decode(errors="replace"))
        self.assertIn(b"manhole listening", process.output)

    @inlineCallbacks
    def test_twistd_demo_rcon_from_the_manhole(self) -> Generator[Deferred[Any], Any, None]:
        """rcon(server, "status") typed in the manhole shows the demo server's reply when
        the Deferred fires."""
        directory = _tmp(self)
        home = directory / "home"
        home.mkdir()
        key, line = make_client_key(directory)
        (directory / "keys").write_text(line + "\n")
        config = directory / "gamews.toml"
        config.write_text('[manhole]\nauthorized_keys = "keys"\ndata_dir = "state"\n')
        web, ssh = free_port(), free_port()
        process = spawn_twistd(["-n", "gamews", "--config", str(config),
                                "--listen", f"tcp:{web}:interface=127.0.0.1",
                                "--manhole", f"tcp:{ssh}:interface=127.0.0.1"],
                               cwd=str(directory))

        @inlineCallbacks
        def stop() -> Generator[Deferred[Any], Any, None]:
            process.signal("KILL")
            yield process.ended

        self.addCleanup(stop)
        yield poll_until(lambda: (can_connect(web) and can_connect(ssh))
                         or process.ended.called, timeout=20)
        self.assertFalse(process.ended.called, process.output.decode(errors="replace"))
        shell = start_ssh(reactor, ssh, ['rcon(sorted(servers)[0], "status")'], home=home,
                          key=key, leave_at_end=False)
        yield shell.wait_for(b"<Deferred #0>")
        yield shell.wait_for(b"Deferred #0 called back: ")
        shell.close_stdin()
        result = yield shell.finished
        self.assertEqual(result.exit_code, 0, result)
        self.assertNotIn(b"Deferred #0 failed", result.stdout)
        self.assertIn(b"called back: 'hostname:", result.stdout)
