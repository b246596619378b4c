/* gamews pages: the shared WebSocket wrapper and the chat, live and console pages.
 *
 * Plain JavaScript, no framework, no build step, nothing fetched from elsewhere.
 * The pages' Content-Security-Policy allows no inline script, so every page loads
 * this one file and runs the part named by <body data-page="..."> (chat, live,
 * console, overlay).
 *
 * Game text (player names, chat, console output) is attacker-controlled: it only
 * ever reaches the page through textContent / text nodes (see el() below), never
 * through innerHTML.
 *
 * Protocol: docs/protocol.md (version 1).
 */
'use strict';

(() => {
  const PROTOCOL = 'gamews.v1';

  // -- small helpers ----------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);

  /** An element; `kids` that are not Nodes become text nodes (never HTML). */
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const kid of kids) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return node;
  }

  function clock(seconds) {
    const date = typeof seconds === 'number' ? new Date(seconds * 1000) : new Date();
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit',
                                         hour12: false });
  }

  /** A CSS class for a team name (Source: CT/TERRORIST; Quake 3: RED/BLUE). */
  function teamClass(team) {
    const t = String(team || '').toLowerCase();
    if (t === 'ct' || t === 'blue') return t === 'ct' ? 'team-ct' : 'team-blue';
    if (t === 'terrorist' || t === 't') return 'team-t';
    if (t === 'red') return 'team-red';
    if (t === 'spectator' || t === 'spectators' || t === 'spectate') return 'team-spec';
    return t ? 'team-other' : 'team-none';
  }

  function teamLabel(team) {
    if (!team) return '—';
    const t = String(team);
    if (t.toUpperCase() === 'TERRORIST') return 'T';
    if (/^spectators?$/i.test(t)) return 'Spec';
    return t;
  }

  const TEAM_ORDER = ['CT', 'TERRORIST', 'BLUE', 'RED'];

  function teamRank(team) {
    const i = TEAM_ORDER.indexOf(String(team || '').toUpperCase());
    if (i >= 0) return i;
    return team && !/^spectators?$/i.test(team) && team !== 'Unassigned' ? 10 : 20;
  }

  /** Keep a scrolled box pinned to its bottom, unless the reader scrolled up. */
  function stickToBottom(box) {
    let pinned = true;
    box.addEventListener('scroll', () => {
      pinned = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    });
    return {
      get pinned() { return pinned; },
      follow() { if (pinned) box.scrollTop = box.scrollHeight; },
    };
  }

  function trim(list, max) {
    while (list.childElementCount > max) list.firstElementChild.remove();
  }

  // -- the page chrome: connection badge, game link badge, toast, server selector ----

  const chrome = {
    conn: null, link: null, toast: null, select: null, selectBox: null,
    toastTimer: 0, links: {}, details: {}, stale: {}, server: null, servers: [],
    remember: true, // follow the server last chosen on this browser (not on the overlay)

    init() {
      this.conn = $('#conn');
      this.link = $('#link');
      this.toast = $('#toast');
      this.select = $('#server');
      this.selectBox = $('#server-box');
    },

    connState(state, text) {
      if (!this.conn) return;
      this.conn.dataset.state = state;
      this.conn.textContent = text || state;
    },

    showToast(text, kind = 'error', ms = 4000) {
      if (!this.toast) return;
      this.toast.textContent = text;
      this.toast.dataset.kind = kind;
      this.toast.hidden = false;
      clearTimeout(this.toastTimer);
      this.toastTimer = setTimeout(() => { this.toast.hidden = true; }, ms);
    },

    /** hello: remember the servers, show the selector when there is a choice. */
    hello(frame, socket) {
      this.servers = Array.isArray(frame.servers) ? frame.servers.map(String) : [];
      this.server = frame.server === null || frame.server === undefined ? null
        : String(frame.server);
      const wanted = this.remember ? localStorage.getItem('gamews.server') : null;
      if (wanted && wanted !== this.server && this.servers.includes(wanted) && socket) {
        socket.send({ type: 'select', server: wanted });
      }
      if (!this.select || !this.selectBox) return;
      this.select.replaceChildren(...this.servers.map((name) =>
        el('option', { value: name, selected: name === this.server }, name)));
      this.selectBox.hidden = this.servers.length <= 1;
      if (!this.select.dataset.wired) {
        this.select.dataset.wired = '1';
        this.select.addEventListener('change', () => {
          localStorage.setItem('gamews.server', this.select.value);
          if (socket) socket.send({ type: 'select', server: this.select.value });
        });
      }
      this.showLink();
    },

    /** link: the RCON link of a game server (shown for the server followed). */
    linkFrame(frame) {
      this.links[String(frame.server)] = String(frame.state || 'unknown');
      // detail: why the link is not up (the console page only; null elsewhere)
      this.details[String(frame.server)] = typeof frame.detail === 'string' ? frame.detail : '';
      this.stale[String(frame.server)] = frame.stale === true;
      this.showLink();
    },

    showLink() {
      if (!this.link) return;
      const state = this.server === null ? 'none' : (this.links[this.server] || 'unknown');
      const words = {
        connected: 'connected', connecting: 'connecting', reconnecting: 'reconnecting',
        password_rejected: 'password rejected', stopped: 'stopped', none: 'no game server',
        unknown: '…',
      };
      // stale: this instance is a fan-out edge whose origin has gone silent; the page
      // shows the last state it heard until events flow again
      const stale = this.server !== null && this.stale[this.server] === true;
      this.link.dataset.state = state;
      this.link.dataset.stale = String(stale);
      document.body.dataset.stale = String(stale);
      const detail = this.server === null ? '' : (this.details[this.server] || '');
      this.link.textContent = `${this.server || 'game'}: ${stale ? 'stale' : (words[state] || state)}`
        + (detail && !stale ? ` (${detail})` : '');
      this.link.title = stale ? 'No news from the gamews instance holding the game link: '
        + 'showing the last state heard' : 'RCON link to the game server';
    },

    /** Frames every page handles the same way; true when handled. */
    common(frame, socket) {
      if (frame.type === 'hello') { this.hello(frame, socket); return false; }
      if (frame.type === 'link') { this.linkFrame(frame); return true; }
      if (frame.type === 'error') {
        this.showToast(String(frame.reason || 'error'));
        return true;
      }
      return false;
    },
  };

  // -- the WebSocket wrapper ----------------------------------------------------

  /**
   * A JSON WebSocket to this host's `path` that reconnects with exponential
   * backoff and jitter, and shows its state in #conn.
   *   onOpen(socket)           after each (re)connection
   *   onFrame(frame, socket)   each JSON object with a string `type`
   *   onClose(event)           return false to stay closed (no reconnect)
   */
  class Socket {
    constructor(path, { onOpen, onFrame, onClose } = {}) {
      this.path = path;
      this.onOpen = onOpen;
      this.onFrame = onFrame;
      this.onClose = onClose;
      this.ws = null;
      this.attempt = 0;
      this.timer = 0;
      this.ticker = 0;
      this.stopped = true;
      window.addEventListener('online', () => { if (this.timer) this.connect(); });
    }

    url() {
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + this.path;
    }

    start() {
      this.stopped = false;
      this.attempt = 0;
      this.connect();
    }

    stop(state = 'offline', text = 'disconnected') {
      this.stopped = true;
      this.clearTimers();
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close(1000, 'bye');
      chrome.connState(state, text);
    }

    get open() {
      return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
    }

    /** Send a frame; false when not connected. */
    send(frame) {
      if (!this.open) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    /** A connection that got far enough (a hello or welcome) restarts the backoff. */
    healthy() {
      this.attempt = 0;
    }

    clearTimers() {
      clearTimeout(this.timer);
      clearInterval(this.ticker);
      this.timer = 0;
      this.ticker = 0;
    }

    connect() {
      this.clearTimers();
      if (this.stopped) return;
      chrome.connState('connecting', 'connecting');
      let ws;
      try {
        ws = new WebSocket(this.url(), [PROTOCOL]);
      } catch (e) {
        this.retry();
        return;
      }
      this.ws = ws;
      ws.addEventListener('open', () => {
        if (ws !== this.ws) return;
        chrome.connState('live', 'live');
        if (this.onOpen) this.onOpen(this);
      });
      ws.addEventListener('message', (event) => {
        if (ws !== this.ws || typeof event.data !== 'string') return;
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') return;
        if (frame.type === 'hello') this.healthy();
        if (this.onFrame) this.onFrame(frame, this);
      });
      ws.addEventListener('close', (event) => {
        if (ws !== this.ws) return;
        this.ws = null;
        const again = this.onClose ? this.onClose(event) !== false : true;
        if (again && !this.stopped) this.retry();
        else if (!this.stopped) this.stop();
      });
    }

    /** Wait min(30, 0.5 * 2^n) seconds, jittered to 50-100 % of it, then connect. */
    retry() {
      const cap = Math.min(30, 0.5 * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 16);
      const delay = cap * (0.5 + Math.random() * 0.5);
      const due = Date.now() + delay * 1000;
      const show = () => {
        const left = Math.max(1, Math.ceil((due - Date.now()) / 1000));
        chrome.connState('reconnecting', `reconnecting in ${left}s`);
      };
      this.clearTimers();
      show();
      this.ticker = setInterval(show, 250);
      this.timer = setTimeout(() => this.connect(), delay * 1000);
    }
  }

  // -- chat ---------------------------------------------------------------------

  function chatPage() {
    const list = $('#lines');
    const box = $('#lines-box');
    const stick = stickToBottom(box);
    const form = $('#say');
    const name = $('#name');
    const text = $('#text');
    const MAX_LINES = 500;
    let server = null;

    name.value = localStorage.getItem('gamews.chat.name') || '';
    name.addEventListener('change', () => {
      localStorage.setItem('gamews.chat.name', name.value.trim());
    });

    function lineNode(line) {
      const kind = ['chat', 'web', 'event'].includes(line.kind) ? line.kind : 'event';
      const li = el('li', {
        class: `line kind-${kind} ${kind === 'chat' ? teamClass(line.team) : ''}`,
        dataset: { kind, event: line.event || '', seq: String(line.seq ?? '') },
      }, el('time', { class: 'ts' }, clock(line.time)));
      if (kind === 'event') {
        li.append(el('span', { class: 'icon', 'aria-hidden': 'true' }),
          el('span', { class: 'text' }, line.text ?? ''));
        return li;
      }
      const tags = [];
      if (kind === 'web') tags.push(el('span', { class: 'tag tag-web' }, 'web'));
      if (line.dead) tags.push(el('span', { class: 'tag tag-dead' }, 'dead'));
      if (line.team_only) tags.push(el('span', { class: 'tag tag-team' }, 'team'));
      li.append(...tags, el('span', { class: 'name' }, line.name ?? '?'),
        el('span', { class: 'text' }, line.text ?? ''));
      return li;
    }

    function add(lines, replace) {
      const nodes = lines.filter((l) => l && typeof l === 'object').map(lineNode);
      if (replace) list.replaceChildren(...nodes);
      else list.append(...nodes);
      trim(list, MAX_LINES);
      $('#empty').hidden = list.childElementCount > 0;
      stick.follow();
    }

    const socket = new Socket('/chat/ws', {
      onFrame(frame, sock) {
        if (chrome.common(frame, sock)) return;
        if (frame.type === 'hello') {
          server = chrome.server;
        } else if (frame.type === 'backlog' && frame.server === server) {
          add(Array.isArray(frame.lines) ? frame.lines : [], true);
        } else if (frame.type === 'line' && frame.server === server) {
          add([frame.line], false);
        }
      },
    });

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const who = name.value.trim();
      const what = text.value.trim();
      if (!who) { name.focus(); chrome.showToast('Pick a name first'); return; }
      if (!what) { text.focus(); return; }
      localStorage.setItem('gamews.chat.name', who);
      if (!socket.send({ type: 'say', name: who, text: what })) {
        chrome.showToast('Not connected: your line was not sent');
        return;
      }
      text.value = '';
      text.focus();
    });

    socket.start();
  }

  // -- live ---------------------------------------------------------------------

  /**
   * Follow a live view socket (`/live/ws`, `/overlay/ws`): a snapshot, then deltas in
   * seq order; a gap asks for a resync. `draw(view)` runs at most once per animation
   * frame with {state, seq, delay, resyncs}. `server`, if given, is selected on hello.
   * `replay` (replayControls()) makes it a replay of a recorded match (`/matches/ws`):
   * the same frames, paced by the server's replay clock.
   */
  function followLive(path, draw, { feed = 10, server: wanted = null, replay = null } = {}) {
    let server = null;
    let seq = null; // the seq of the state shown; null until a snapshot
    let run = null; // the numbering seq belongs to (changes when the origin restarts)
    let waiting = true; // a snapshot is due (first one, or after a resync)
    let state = { map: null, round: 0, teams: {}, players: {}, kill_feed: [] };
    let delay = 0;
    let queued = false;
    let resyncs = 0;
    let token = null; // a console token, kept in this closure only, to skip the delay

    function snapshot(frame) {
      const s = frame.state || {};
      state = {
        map: s.map ?? null,
        round: s.round ?? 0,
        teams: s.teams && typeof s.teams === 'object' ? { ...s.teams } : {},
        players: s.players && typeof s.players === 'object' ? { ...s.players } : {},
        kill_feed: Array.isArray(s.kill_feed) ? s.kill_feed.slice(-feed) : [],
      };
      seq = Number(frame.seq);
      run = frame.run ?? null;
      delay = Number(frame.delay) || 0;
      waiting = false;
      if (replay) replay.at(frame.t);
      render();
    }

    function delta(frame, sock) {
      if (waiting) return; // a snapshot is on its way
      const n = Number(frame.seq);
      const sameRun = (frame.run ?? null) === run;
      if (sameRun && (!Number.isFinite(n) || n <= seq)) return; // old news
      if (!sameRun || n !== seq + 1) {
        // missed one or more: ask for a fresh snapshot and ignore deltas until it comes
        waiting = true;
        resyncs += 1;
        sock.send({ type: 'resync' });
        return;
      }
      const c = frame.changes || {};
      if ('map' in c) state.map = c.map;
      if ('round' in c) state.round = c.round;
      if ('teams' in c) state.teams = c.teams && typeof c.teams === 'object' ? { ...c.teams } : {};
      if (c.players && typeof c.players === 'object') {
        for (const [id, player] of Object.entries(c.players)) {
          if (player === null) delete state.players[id];
          else state.players[id] = player;
        }
      }
      if (Array.isArray(c.kill_feed)) state.kill_feed = state.kill_feed.concat(c.kill_feed).slice(-feed);
      seq = n;
      if (replay) replay.at(frame.t);
      render();
    }

    function render() {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        draw({ state, seq, delay, resyncs });
      });
    }

    const socket = new Socket(path, {
      onOpen(sock) {
        waiting = true;
        if (replay) replay.open(sock);
      },
      onFrame(frame, sock) {
        if (frame.type === 'error' && frame.reason === 'login refused') token = null;
        if (replay && replay.frame(frame)) return;
        if (frame.type === 'hello' && wanted && frame.server !== wanted
            && Array.isArray(frame.servers) && frame.servers.includes(wanted)) {
          sock.send({ type: 'select', server: wanted });
        }
        if (chrome.common(frame, sock)) return;
        if (frame.type === 'hello') {
          server = chrome.server;
          waiting = true;
          seq = null;
          if (token) sock.send({ type: 'login', token });
        } else if (frame.server !== undefined && frame.server !== server) {
          // a frame for a server no longer followed
        } else if (frame.type === 'snapshot') {
          snapshot(frame);
        } else if (frame.type === 'delta') {
          delta(frame, sock);
        }
      },
    });
    if (replay) replay.wire(socket);
    socket.start();
    draw({ state, seq, delay, resyncs });
    return {
      login(t) {
        token = t;
        if (token) socket.send({ type: 'login', token });
      },
    };
  }

  /** The scores to show: before the first round ends, the teams playing at 0. */
  function teamScores(state) {
    const scores = { ...state.teams };
    for (const p of Object.values(state.players)) {
      if (p && p.team && teamRank(p.team) < 20 && !(p.team in scores)) scores[p.team] = 0;
    }
    return Object.entries(scores).sort((a, b) => teamRank(a[0]) - teamRank(b[0])
      || a[0].localeCompare(b[0]));
  }

  function teamScoreNodes(teams) {
    return teams.map(([team, score]) =>
      el('div', { class: `team-score ${teamClass(team)}` },
        el('span', { class: 'team-name' }, teamLabel(team)),
        el('span', { class: 'team-points' }, String(score ?? 0))));
  }

  function killNodes(killFeed) {
    return killFeed.slice().reverse().map((k) => {
      const who = (n, team) => el('span', { class: `kname ${teamClass(team)}` }, n ?? '?');
      return el('li', { class: 'kill' },
        k.killer !== null && k.killer !== undefined ? who(k.killer, k.killer_team) : null,
        el('span', { class: 'weapon' }, k.weapon ? String(k.weapon) : 'died'),
        k.kind === 'suicide' || k.kind === 'world'
          ? el('span', { class: 'tag' }, k.kind === 'suicide' ? 'suicide' : 'world') : null,
        k.headshot ? el('span', { class: 'tag tag-hs', title: 'headshot' }, 'HS') : null,
        who(k.victim, k.victim_team));
    });
  }

  function livePage() {
    function draw({ state, seq, delay, resyncs }) {
      $('#map').textContent = state.map || '—';
      document.title = `${state.map ? `${state.map} · ` : ''}${document.body.dataset.replay ? 'Replay' : 'Live'} · gamews`;
      $('#round').textContent = state.round ? String(state.round) : '—';
      const teams = teamScores(state);
      $('#teams').replaceChildren(...teamScoreNodes(teams));
      $('#teams').hidden = teams.length === 0;

      const players = Object.values(state.players).filter((p) => p && typeof p === 'object');
      players.sort((a, b) => teamRank(a.team) - teamRank(b.team)
        || String(a.team || '').localeCompare(String(b.team || ''))
        || (Number(b.score) || 0) - (Number(a.score) || 0)
        || (Number(b.kills) || 0) - (Number(a.kills) || 0)
        || (Number(a.deaths) || 0) - (Number(b.deaths) || 0)
        || String(a.name || '').localeCompare(String(b.name || '')));
      const num = (v) => el('td', { class: 'num' }, v === null || v === undefined ? '—' : String(v));
      $('#players').replaceChildren(...players.map((p) =>
        el('tr', { class: teamClass(p.team), dataset: { id: String(p.id ?? '') } },
          el('td', { class: 'pname' }, el('span', { class: 'swatch', 'aria-hidden': 'true' }),
            el('span', { class: 'ptext', title: String(p.name ?? '') }, p.name ?? '?'),
            p.bot ? el('span', { class: 'tag tag-bot' }, 'bot') : null),
          el('td', { class: 'pteam' }, teamLabel(p.team)),
          num(p.kills ?? 0), num(p.deaths ?? 0), num(p.score ?? 0), num(p.ping))));
      $('#count').textContent = `${players.length} player${players.length === 1 ? '' : 's'}`;
      $('#no-players').hidden = players.length > 0;

      $('#killfeed').replaceChildren(...killNodes(state.kill_feed));
      $('#no-kills').hidden = state.kill_feed.length > 0;
      $('#delay').hidden = !(delay > 0);
      $('#delay').textContent = delay > 0 ? `Spectator delay: ${delay}s` : '';
      $('#admin-form').hidden = !(delay > 0);
      const meta = $('#seq');
      meta.textContent = seq === null ? '' : `seq ${seq}${resyncs ? ` · ${resyncs} resync` : ''}`;
      meta.dataset.seq = seq === null ? '' : String(seq);
    }

    const replay = replayControls();
    const live = followLive(replay ? '/matches/ws' : '/live/ws', draw, { replay });
    $('#admin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('#admin-token');
      const token = input.value.trim() || null;
      input.value = '';
      live.login(token);
    });
  }

  // -- overlay --------------------------------------------------------------------

  /**
   * The stream overlay (OBS browser source): score and kill feed on a transparent page,
   * no controls. URL parameters: width (px, 200-3840), scale (0.5-4), feed (kill feed
   * entries, 0-20), server (the game server to follow), score=0 / kills=0 to hide a part.
   */
  function overlayPage() {
    chrome.remember = false;
    const params = new URLSearchParams(location.search);
    const number = (name, low, high, fallback) => {
      const v = Number(params.get(name));
      return params.has(name) && Number.isFinite(v) ? Math.min(high, Math.max(low, v)) : fallback;
    };
    const root = document.documentElement.style;
    root.setProperty('--overlay-width', `${number('width', 200, 3840, 420)}px`);
    root.setProperty('--overlay-scale', String(number('scale', 0.5, 4, 1)));
    const feed = Math.round(number('feed', 0, 20, 5));
    $('#score').hidden = params.get('score') === '0';
    $('#kills').hidden = params.get('kills') === '0' || feed === 0;

    function draw({ state, seq }) {
      $('#score').replaceChildren(...teamScoreNodes(teamScores(state)));
      $('#kills').replaceChildren(...killNodes(state.kill_feed.slice(-feed)));
      document.body.dataset.seq = seq === null ? '' : String(seq);
    }

    followLive('/overlay/ws', draw, { feed: Math.max(feed, 1), server: params.get('server') });
  }

  /**
   * The replay bar of /matches/ID/replay, or null on /live. Position `t` is in seconds
   * since the match started; `?t=SECONDS` opens the replay paused at that moment.
   */
  function replayControls() {
    const found = location.pathname.match(/^\/matches\/(\d+)\/replay\/?$/);
    if (!found) return null;
    const match = Number(found[1]);
    const params = new URLSearchParams(location.search);
    const start = Number(params.get('t'));
    const bar = $('#replay-bar');
    const seekInput = $('#replay-seek');
    const playButton = $('#replay-play');
    const speedSelect = $('#replay-speed');
    const timeLabel = $('#replay-time');
    const link = $('#replay-link');
    let socket = null;
    let duration = 0;
    let position = Number.isFinite(start) && start > 0 ? start : 0;
    let playing = !(params.has('t'));
    let speed = 1;
    let wall = performance.now();
    let dragging = false;

    bar.hidden = false;
    document.body.dataset.replay = String(match);
    $('.tabs a[href="/live"]').removeAttribute('aria-current');
    $('.tabs a[href="/matches"]').setAttribute('aria-current', 'page');

    const fmt = (t) => {
      const s = Math.max(0, Math.floor(t));
      return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
    };
    const now = () => (playing ? Math.min(duration || Infinity,
      position + ((performance.now() - wall) / 1000) * speed) : position);

    function show() {
      const t = now();
      if (!dragging) seekInput.value = String(t);
      timeLabel.textContent = `${fmt(t)} / ${fmt(duration)}`;
      timeLabel.dataset.t = String(Math.floor(t));
      link.href = `/matches/${match}/replay?t=${Math.floor(t)}`;
      playButton.textContent = playing ? 'Pause' : 'Play';
      bar.dataset.playing = String(playing);
    }
    setInterval(show, 250);

    function seek(t) {
      position = t;
      wall = performance.now();
      if (socket) socket.send({ type: 'seek', t });
      show();
    }

    return {
      open(sock) {
        socket = sock;
        sock.send({ type: 'open', match, t: now(), speed, playing });
      },
      wire(sock) {
        socket = sock;
        playButton.addEventListener('click', () => {
          sock.send({ type: playing ? 'pause' : 'play' });
        });
        speedSelect.addEventListener('change', () => {
          sock.send({ type: 'speed', speed: Number(speedSelect.value) });
        });
        seekInput.addEventListener('input', () => { dragging = true; });
        seekInput.addEventListener('change', () => {
          dragging = false;
          seek(Number(seekInput.value));
        });
      },
      at(t) {
        if (typeof t !== 'number') return;
        position = t;
        wall = performance.now();
        show();
      },
      /** Replay frames (true when handled). */
      frame(frame) {
        if (frame.type === 'timeline') {
          duration = Number(frame.duration) || 0;
          seekInput.max = String(duration);
          const mark = (t, kind) => el('span', { class: `mark-${kind}`, dataset: { t: String(t) } });
          const marks = [];
          for (const t of frame.kills || []) marks.push(mark(t, 'kill'));
          for (const t of frame.rounds || []) marks.push(mark(t, 'round'));
          for (const node of marks) {
            node.style.left = `${duration ? (Number(node.dataset.t) / duration) * 100 : 0}%`;
          }
          $('#replay-marks').replaceChildren(...marks);
          const m = frame.match || {};
          document.title = `Replay #${match}${m.map ? ` · ${m.map}` : ''} · gamews`;
          show();
          return true;
        }
        if (frame.type === 'replay') {
          playing = frame.playing === true;
          speed = Number(frame.speed) || 1;
          speedSelect.value = String(speed);
          duration = Number(frame.duration) || duration;
          position = Number(frame.t) || 0;
          wall = performance.now();
          timeLabel.dataset.state = frame.ended ? 'ended' : (playing ? 'playing' : 'paused');
          show();
          return true;
        }
        return false;
      },
    };
  }

  // -- console ------------------------------------------------------------------

  function consolePage() {
    const loginBox = $('#login');
    const loginForm = $('#login-form');
    const tokenInput = $('#token');
    const loginError = $('#login-error');
    const main = $('#console');
    const log = $('#log');
    const stick = stickToBottom(log);
    const cmdForm = $('#cmd-form');
    const cmd = $('#cmd');
    const MAX_NODES = 2000;

    let token = null; // in memory only: never in storage, never in the URL
    let user = null;
    let nextId = 1;
    const pending = new Map();
    const history = [];
    let cursor = 0;
    let draft = '';

    function show(node) {
      log.append(node);
      trim(log, MAX_NODES);
      stick.follow();
    }

    function note(text, kind = 'note') {
      show(el('div', { class: `entry ${kind}` }, el('time', { class: 'ts' }, clock()),
        el('span', { class: 'text' }, text)));
    }

    function loggedOut(message) {
      token = null;
      user = null;
      main.hidden = true;
      loginBox.hidden = false;
      tokenInput.value = '';
      loginError.textContent = message || '';
      loginError.hidden = !message;
      tokenInput.focus();
    }

    function welcome(frame) {
      user = frame;
      socket.healthy();
      loginBox.hidden = true;
      main.hidden = false;
      loginError.hidden = true;
      $('#user').textContent = String(frame.user ?? '?');
      const role = String(frame.role ?? '?');
      $('#role').textContent = role;
      $('#role').dataset.role = role;
      const allowed = Array.isArray(frame.allowed) ? frame.allowed.map(String) : [];
      $('#allowed').replaceChildren(...(allowed.includes('*')
        ? [el('span', { class: 'chip' }, 'any command')]
        : allowed.length ? allowed.map((a) => el('span', { class: 'chip' }, a))
          : [el('span', { class: 'chip muted' }, 'none (read only)')]));
      const canRun = role !== 'viewer' && allowed.length > 0;
      cmd.disabled = !canRun;
      cmdForm.querySelector('button').disabled = !canRun;
      cmd.placeholder = canRun ? 'RCON command, e.g. status' : 'viewers cannot run commands';
      note(`logged in as ${frame.user} (${role})`);
      if (canRun) cmd.focus();
    }

    function result(frame) {
      const block = pending.get(frame.id);
      pending.delete(frame.id);
      const status = ['ok', 'refused', 'error'].includes(frame.status) ? frame.status : 'error';
      let target = block;
      if (!target) { // an answer to a command sent before a reconnect
        target = el('div', { class: 'entry cmd' },
          el('div', { class: 'cmd-head' }, el('time', { class: 'ts' }, clock()),
            el('span', { class: 'cmd-text' }, `#${frame.id}`), el('span', { class: 'cmd-status' })));
        show(target);
      }
      target.dataset.status = status;
      target.querySelector('.cmd-status').textContent = status;
      const output = String(frame.output ?? '').replace(/\s+$/, '');
      if (output) target.append(el('pre', { class: 'output' }, output));
      stick.follow();
    }

    const socket = new Socket('/console/ws', {
      onOpen(sock) {
        if (token === null) { sock.stop(); return; }
        sock.send({ type: 'login', token });
      },
      onFrame(frame, sock) {
        if (frame.type === 'welcome') { welcome(frame); return; }
        if (frame.type === 'denied') {
          sock.stop('offline', 'logged out');
          loggedOut('That token was refused.');
          return;
        }
        if (chrome.common(frame, sock)) {
          if (frame.type === 'link' && frame.server === chrome.server) {
            note(`RCON link ${frame.server}: ${String(frame.state).replace('_', ' ')}`, 'link');
          }
          return;
        }
        if (frame.type === 'hello') return;
        if (frame.type === 'result') result(frame);
        else if (frame.type === 'console') {
          show(el('div', { class: 'entry cline' }, el('time', { class: 'ts' }, clock(frame.time)),
            el('span', { class: 'text' }, String(frame.line ?? ''))));
        }
      },
      onClose(event) {
        for (const block of pending.values()) {
          block.dataset.status = 'lost';
          block.querySelector('.cmd-status').textContent = 'no answer (disconnected)';
        }
        pending.clear();
        if (token === null) return false;
        if (event.code === 1008 && user === null) {
          const why = event.reason && event.reason !== 'login refused' ? ` (${event.reason})` : '';
          loggedOut(`That token was refused${why}.`);
          return false;
        }
        return true;
      },
    });

    loginForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const value = tokenInput.value.trim();
      tokenInput.value = '';
      if (!value) return;
      token = value;
      user = null;
      loginError.hidden = true;
      socket.stop('connecting', 'connecting');
      socket.start();
    });

    $('#logout').addEventListener('click', () => {
      socket.stop('offline', 'logged out');
      log.replaceChildren();
      loggedOut('');
    });

    cmdForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const line = cmd.value.trim();
      if (!line) return;
      if (history[history.length - 1] !== line) history.push(line);
      if (history.length > 100) history.shift();
      cursor = history.length;
      draft = '';
      const id = nextId++;
      const block = el('div', { class: 'entry cmd', dataset: { status: 'pending' } },
        el('div', { class: 'cmd-head' }, el('time', { class: 'ts' }, clock()),
          el('span', { class: 'prompt', 'aria-hidden': 'true' }, '›'),
          el('span', { class: 'cmd-text' }, line),
          el('span', { class: 'cmd-status' }, '…')));
      if (!socket.send({ type: 'command', id, server: chrome.server, command: line })) {
        chrome.showToast('Not connected: the command was not sent');
        return;
      }
      pending.set(id, block);
      stick.follow();
      show(block);
      cmd.value = '';
    });

    cmd.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowUp') {
        if (cursor === 0) return;
        if (cursor === history.length) draft = cmd.value;
        cursor -= 1;
        cmd.value = history[cursor];
      } else if (event.key === 'ArrowDown') {
        if (cursor >= history.length) return;
        cursor += 1;
        cmd.value = cursor === history.length ? draft : history[cursor];
      } else {
        return;
      }
      event.preventDefault();
      const end = cmd.value.length;
      requestAnimationFrame(() => cmd.setSelectionRange(end, end));
    });

    chrome.connState('offline', 'not logged in');
    tokenInput.focus();
  }

  // -- start ----------------------------------------------------------------------

  function start() {
    chrome.init();
    chrome.showLink();
    const page = document.body.dataset.page;
    if (page === 'chat') chatPage();
    else if (page === 'live') livePage();
    else if (page === 'console') consolePage();
    else if (page === 'overlay') overlayPage();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
