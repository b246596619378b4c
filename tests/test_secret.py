"""Secrets: from files or the environment, never shown, compared in constant time."""

from __future__ import annotations

import pickle
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from gamews.errors import ConfigError
from gamews.secret import Secret, secret_from_table


class SecretTests(SynchronousTestCase):
    """Secret and secret_from_table."""

    def test_hidden_from_repr_and_str(self) -> None:
        """repr, str and formatting never show the value."""
        secret = Secret("hunter2")
        for text in (repr(secret), str(secret), f"{secret}", repr({"pw": secret})):
            self.assertNotIn("hunter2", text)
        self.assertRaises(TypeError, pickle.dumps, secret)

    def test_matches(self) -> None:
        """matches compares str or bytes."""
        secret = Secret("hunter2")
        self.assertTrue(secret.matches("hunter2"))
        self.assertTrue(secret.matches(b"hunter2"))
        self.assertFalse(secret.matches("hunter3"))
        self.assertFalse(secret.matches(""))

    def test_from_file_strips_newline(self) -> None:
        """A file's trailing newline is not part of the secret; relative paths use base_dir."""
        base = Path(self.mktemp())
        base.mkdir()
        (base / "pw").write_text("s3cret\n")
        secret = secret_from_table({"password_file": "pw"}, "password", where="server.a",
                                   base_dir=base)
        assert secret is not None
        self.assertEqual(secret.reveal(), "s3cret")

    def test_from_env(self) -> None:
        """A named environment variable supplies the secret."""
        secret = secret_from_table({"password_env": "RCON_PW"}, "password", where="server.a",
                                   environ={"RCON_PW": "abc"})
        assert secret is not None
        self.assertEqual(secret.reveal(), "abc")

    def test_inline_refused_with_hint(self) -> None:
        """An inline secret is refused, saying where to put it."""
        with self.assertRaises(ConfigError) as raised:
            secret_from_table({"password": "abc"}, "password", where="server.a")
        self.assertEqual(raised.exception.key, "server.a.password")
        self.assertIn("password_file", str(raised.exception))
        self.assertNotIn("abc", str(raised.exception))

    def test_missing_and_optional(self) -> None:
        """Missing: an error when required, None otherwise; unset env is an error."""
        self.assertRaises(ConfigError, secret_from_table, {}, "password", where="s")
        self.assertIsNone(secret_from_table({}, "password", where="s", required=False))
        self.assertRaises(ConfigError, secret_from_table, {"password_env": "NOPE"}, "password",
                          where="s", environ={})
        self.assertRaises(ConfigError, secret_from_table, {"password_file": "/nonexistent"},
                          "password", where="s")
