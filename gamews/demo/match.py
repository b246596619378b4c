"""A simulated Counter-Strike match that writes real Source engine log lines.

Pure: no Twisted, no sockets, no clock of its own. :meth:`DemoMatch.advance`
takes the current time and returns the log lines (HL Log Standard, as CS:GO
writes them) that happened since the last call; :meth:`DemoMatch.command`
answers an RCON command (``say``, ``status``, ``kick``, ``changelevel``, …)
and may add lines of its own (as a real server logs ``rcon from``, kicks and
map changes).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAPS", "DemoMatch", "DemoPlayer"]

MAPS: Final = ("de_dust2", "de_inferno", "de_mirage", "de_nuke")
WEAPONS: Final = ("ak47", "m4a1", "awp", "deagle", "usp_silencer", "glock", "famas", "mp9",
                  "hegrenade", "knife")
CHAT: Final = ("gg", "nice shot", "rush B", "eco this round?", "anyone got a drop?",
               "wp", "one left B site", "rotate!", "lol", "save your guns")
NAMES: Final = ("Sarge", "Grism", "Kyonshi", "Major", "Ayumi", "Doom", "Slash",
                "<img src=x onerror=alert(1)>", 'Dr. "Quotes"', "Élodie")
ROUND_SECONDS: Final = 40.0
ROUNDS_PER_MAP: Final = 6


@dataclass
class DemoPlayer:
    """One simulated player."""

    userid: int
    name: str
    steamid: str
    team: str = ""
    kills: int = 0
    deaths: int = 0
    alive: bool = True
    joined: float = 0.0

    def tag(self) -> str:
        """The HL log form ``"Name<userid><steamid><team>"``."""
        return f'"{self.name}<{self.userid}><{self.steamid}><{self.team}>"'


@dataclass
class DemoMatch:
    """The simulation; ``seed`` makes a run reproducible."""

    seed: int = 0
    hostname: str = "gamews demo"
    players: dict[int, DemoPlayer] = field(default_factory=dict)
    map: str = MAPS[0]
    score: dict[str, int] = field(default_factory=lambda: {"CT": 0, "TERRORIST": 0})
    round: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next_userid = 2
        self._now: float | None = None
        self._round_ends = 0.0
        self._next_kill = 0.0
        self._next_chat = 0.0
        self._next_churn = 0.0
        self._pending: list[str] = []
        self._map_index = 0

    # -- time ------------------------------------------------------------------

    def advance(self, now: float) -> list[str]:
        """Everything that happened up to ``now`` (seconds, any epoch), as log lines."""
        if self._now is None:
            self._now = now
            self._start_map(self.map)
            for name in NAMES[:8]:
                self._join(name)
            self._start_round()
        while self._now < now:
            step = min(now, self._now + 1.0)
            self._now = step
            if step >= self._round_ends:
                self._end_round()
            if step >= self._next_kill:
                self._kill()
                self._next_kill = step + self._rng.uniform(0.5, 3.0)
            if step >= self._next_chat:
                self._chat()
                self._next_chat = step + self._rng.uniform(3.0, 8.0)
            if step >= self._next_churn:
                self._churn()
                self._next_churn = step + self._rng.uniform(30.0, 60.0)
        lines, self._pending = self._pending, []
        return lines

    def _log(self, text: str) -> None:
        assert self._now is not None
        stamp = time.strftime("%m/%d/%Y - %H:%M:%S", time.gmtime(self._now))
        self._pending.append(f"L {stamp}: {text}")

    # -- the game --------------------------------------------------------------

    def _start_map(self, name: str) -> None:
        self.map = name
        self.round = 0
        self.score = {"CT": 0, "TERRORIST": 0}
        for p in self.players.values():
            p.kills = p.deaths = 0
        self._log(f'Loading map "{name}"')
        self._log(f'Started map "{name}" (CRC "-{self._rng.randrange(10**9)}")')
        self._log(f'World triggered "Match_Start" on "{name}"')

    def _join(self, name: str) -> DemoPlayer:
        userid = self._next_userid
        self._next_userid += 1
        bot = self._rng.random() < 0.5
        steamid = "BOT" if bot else f"STEAM_1:{userid % 2}:{1000 + userid * 7919}"
        player = DemoPlayer(userid, name, steamid, joined=self._now or 0.0)
        self.players[userid] = player
        self._log(f'{player.tag()} connected, address "{"" if bot else "127.0.0.1:27005"}"')
        self._log(f"{player.tag()} entered the game")
        cts = sum(1 for p in self.players.values() if p.team == "CT")
        ts = sum(1 for p in self.players.values() if p.team == "TERRORIST")
        team = "CT" if cts <= ts else "TERRORIST"
        self._log(f'"{name}<{userid}><{steamid}>" switched from team <Unassigned> to <{team}>')
        player.team = team
        return player

    def _leave(self, player: DemoPlayer, reason: str) -> None:
        self._log(f'{player.tag()} disconnected (reason "{reason}")')
        del self.players[player.userid]

    def _start_round(self) -> None:
        assert self._now is not None
        self.round += 1
        for p in self.players.values():
            p.alive = True
        self._round_ends = self._now + ROUND_SECONDS
        self._log('World triggered "Round_Start"')

    def _end_round(self, winner: str | None = None) -> None:
        if winner is None:
            alive = {t: sum(1 for p in self.players.values() if p.alive and p.team == t)
                     for t in ("CT", "TERRORIST")}
            winner = max(alive, key=lambda t: (alive[t], self._rng.random()))
        self.score[winner] += 1
        notice = "SFUI_Notice_CTs_Win" if winner == "CT" else "SFUI_Notice_Terrorists_Win"
        self._log(f'Team "{winner}" triggered "{notice}" (CT "{self.score["CT"]}") '
                  f'(T "{self.score["TERRORIST"]}")')
        for team in ("CT", "TERRORIST"):
            count = sum(1 for p in self.players.values() if p.team == team)
            self._log(f'Team "{team}" scored "{self.score[team]}" with "{count}" players')
        self._log('World triggered "Round_End"')
        if self.round >= ROUNDS_PER_MAP:
            self._log(f"Game Over: competitive default {self.map} score "
                      f'{self.score["CT"]}:{self.score["TERRORIST"]} after 5 min')
            self._map_index = (self._map_index + 1) % len(MAPS)
            self._start_map(MAPS[self._map_index])
        self._start_round()

    def _kill(self) -> None:
        alive = [p for p in self.players.values() if p.alive and p.team]
        killers = [p for p in alive if any(v.team != p.team for v in alive)]
        if not killers:
            self._end_round()
            return
        killer = self._rng.choice(killers)
        victim = self._rng.choice([p for p in alive if p.team != killer.team])
        weapon = self._rng.choice(WEAPONS)
        flags = " (headshot)" if weapon != "hegrenade" and self._rng.random() < 0.3 else ""
        self._log(f"{killer.tag()} [{self._pos()}] killed {victim.tag()} [{self._pos()}] "
                  f'with "{weapon}"{flags}')
        killer.kills += 1
        victim.deaths += 1
        victim.alive = False
        if not any(p.alive and p.team == victim.team for p in self.players.values()):
            self._end_round(killer.team)

    def _pos(self) -> str:
        return " ".join(str(self._rng.randint(-2500, 2500)) for _ in range(3))

    def _chat(self) -> None:
        if not self.players:
            return
        player = self._rng.choice(list(self.players.values()))
        kind = "say_team" if self._rng.random() < 0.3 else "say"
        self._log(f'{player.tag()} {kind} "{self._rng.choice(CHAT)}"')

    def _churn(self) -> None:
        if len(self.players) > 6 and self._rng.random() < 0.5:
            self._leave(self._rng.choice(list(self.players.values())), "Disconnect")
        else:
            present = {p.name for p in self.players.values()}
            missing = [n for n in NAMES if n not in present]
            if missing:
                self._join(self._rng.choice(missing))

    # -- RCON ------------------------------------------------------------------

    def command(self, line: str, source: str = "127.0.0.1:0") -> str:
        """Run an RCON command line and return the console's reply text."""
        self._log(f'rcon from "{source}": command "{line}"')
        name, _, args = line.strip().partition(" ")
        args = args.strip()
        if name == "say":
            text = args[1:-1] if len(args) > 1 and args[0] == args[-1] == '"' else args
            self._log(f'"Console<0><Console><Console>" say "{text}"')
            return f"Console: {text}\n"
        if name == "status":
            return self._status()
        if name == "kick":
            target = args.strip('"')
            player = next((p for p in self.players.values()
                           if p.name == target or str(p.userid) == target), None)
            if player is None:
                return f"Player {target} not found\n"
            self._leave(player, "Kicked by Console")
            return f"Kicked {player.name}\n"
        if name in ("changelevel", "map"):
            if args not in MAPS:
                return f"changelevel failed: {args} not found\n"
            self._start_map(args)
            self._start_round()
            return f"Changing level to {args}\n"
        if name == "cvarlist":
            return "".join(f"demo_cvar_{i:04d} : {i} : , \"sv\" : a demo variable\n"
                           for i in range(2000))
        return f'Unknown command "{name}"\n'

    def _status(self) -> str:
        humans = sum(1 for p in self.players.values() if p.steamid != "BOT")
        bots = len(self.players) - humans
        rows = "".join(
            f'#  {p.userid} {i} "{p.name}" {p.steamid} {"BOT" if p.steamid == "BOT" else "00:42"}'
            f" {self._rng.randint(5, 80)} 0 active 786432\n"
            for i, p in enumerate(self.players.values(), 1)
        )
        return (f"hostname: {self.hostname}\n"
                "version : 1.38.8.1/13881 1575/8853 secure  [G:1:0000000]\n"
                "udp/ip  : 127.0.0.1:27015  (public ip: 127.0.0.1)\n"
                "os      :  Linux\n"
                "type    :  community dedicated\n"
                f"map     : {self.map}\n"
                f"players : {humans} humans, {bots} bots (16/0 max) (not hibernating)\n\n"
                "# userid name uniqueid connected ping loss state rate\n"
                f"{rows}#end\n")
