"""The IMAP connection state machine, sans-IO (bytes in, outputs out; model: h11).

    conn = ImapConnection(backend, hostname="mail.b.example")
    outputs = conn.greeting()
    outputs = conn.receive_data(chunk)   # any chunking; literals handled here
    outputs = conn.poll()                # while IDLE: pushes for changes made elsewhere
    outputs = conn.messages_loaded(...)  # answers to ReadMessages, and likewise
                                         # summaries_loaded / messages_written / files_removed

The core frames commands (lines plus `{n}` / `{n+}` literals, deciding when to send
"+ Ready for literal"), parses them, runs them against the injected backend and
says what to write and what to show. It never raises on client input. Built with
defer_reads=True (the TCP adapter), it touches storage only through outputs the
adapter answers off the event loop: message files (ReadMessages, ReadSummaries,
WriteMessages, RemoveFiles) and every other backend call (StorageCalls: folder
listings, flag renames, folder management, subscriptions; answered by storage_done).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import Any

from app.protocols.imap import commands
from app.protocols.imap.backend import ImapBackend, UserMailboxes
from app.protocols.imap.mime import ParsedMessage
from app.protocols.imap.outputs import (
    ClientSent,
    Close,
    MailboxChanged,
    MailboxNote,
    Output,
    ReadMessages,
    ReadSummaries,
    RemoveFiles,
    Send,
    StartTLS,
    StorageCalls,
    WriteMessages,
)
from app.protocols.imap.parser import (
    LITERAL_AT_END,
    Atom,
    Command,
    ParseError,
    parse_command,
    sniff,
)
from app.protocols.imap.reads import Call, Need, run_calls
from app.protocols.imap.sasl import finish_plain
from app.protocols.imap.state import State
from app.protocols.imap.summary import Summary, summarize
from app.protocols.imap.view import SelectedMailbox
from app.protocols.imap.wire import CommandError, text_arg
from app.protocols.sasl import shown as sasl_shown

# Octets per command line, CRLF excluded: Dovecot's imap_max_line_length (64 KiB).
# RFC 7162 §4 asks for at least 8192; clients send long ID, SEARCH and UID sets.
MAX_LINE = 65536
MAX_LITERAL = 10 * 1024 * 1024
MAX_LOGIN_FAILURES = 3
_SHOWN_OVERLONG = 16 * 1024  # how much of a rejected over-long line the event keeps
_BAD_CREDENTIALS = "[AUTHENTICATIONFAILED] Invalid credentials"
_PRIVACY_REQUIRED = (
    "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections; "
    "use STARTTLS first"
)


_ANY = frozenset(State) - {State.LOGOUT}
_AUTHED = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})
_NOT_AUTHED = frozenset({State.NOT_AUTHENTICATED})

Result = tuple[str, str] | None
Steps = Generator[Need, None, Result]  # a handler that needs message contents
Handler = Callable[["ImapConnection", Command], "Result | Steps"]
_SUSPENDED = ("", "")  # _drive's answer while the adapter does storage work
Request = ReadMessages | ReadSummaries | WriteMessages | RemoveFiles | StorageCalls
_CACHE_MESSAGES = 32
_SHOWN_MOVES = 5  # file names a maildir.recent note lists before "… (n more)"


def event_name(command: str | None) -> str:
    """Explanation key part for a command: "UID FETCH" -> "uid_fetch"."""
    if command is None or command not in COMMANDS:
        return "unknown"
    return command.lower().replace(" ", "_")


class ImapConnection:
    def __init__(
        self,
        backend: ImapBackend,
        *,
        hostname: str = "localhost",
        tls_active: bool = False,
        starttls_available: bool = True,
        cleartext_login: bool = False,
        defer_reads: bool = False,
    ) -> None:
        self.backend = backend
        self.hostname = hostname
        self.tls_active = tls_active
        self.starttls_available = starttls_available
        # Dovecot's disable_plaintext_auth: no password before TLS unless configured so.
        self.cleartext_login = cleartext_login
        # True (the TCP adapter): message contents come through ReadMessages, read off
        # the event loop; False (in-memory backends): the core reads them directly.
        self.defer_reads = defer_reads
        self.state = State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.mailboxes: UserMailboxes | None = None
        self.selected: SelectedMailbox | None = None
        self.login_failures = 0
        self._buf = bytearray()
        self._pending = bytearray()  # the command being framed (line + literals so far)
        self._literal_left = 0
        self._skip_left = 0  # octets of an oversized literal being thrown away
        self._overlong: bytearray | None = None  # an over-long line being thrown away
        self._overlong_size = 0
        self._reject_after_skip = False  # the over-long "line" is the rest of a refused command
        self._mode = "command"  # or "idle" / "sasl" while a command waits for lines
        self._waiting: Command | None = None
        self._untagged: list[bytes] = []
        self._after: list[Output] = []
        self._reply_key: str | None = None  # set by a handler for a more specific event key
        self._cache: OrderedDict[tuple[str, str], ParsedMessage] = OrderedDict()
        self._batch: dict[tuple[str, str], ParsedMessage] = {}  # the batch being worked on
        self._steps: Steps | None = None  # a command waiting for messages
        self._read: Request | None = None  # what the adapter is doing for us now
        self._finish: Callable[[Result], list[Output]] | None = None  # when _steps end
        self._resume_mode = "command"  # the mode to go back to when the answer comes
        self._results: list[Any] = []  # StorageCalls' answer, for the handler
        self._listed: tuple[str, Any] | None = None  # a listing taken this command
        self._removed: list[str] = []  # RemoveFiles' answer, for the handler
        self._written: list[str | None] = []  # WriteMessages' answer, for the handler
        self._throw: BaseException | None = None  # the adapter's storage error, for it
        self._summaries: dict[tuple[str, str], Summary] = {}  # the batch being worked on

    # -- public API ------------------------------------------------------------
    @property
    def idling(self) -> bool:
        return self._mode == "idle"

    @property
    def closed(self) -> bool:
        return self.state is State.LOGOUT

    @property
    def login_allowed(self) -> bool:
        """May a password be sent now? Only inside TLS, unless the server is configured
        for cleartext logins (RFC 9051 §6.2.3)."""
        return self.tls_active or self.cleartext_login

    def capabilities(self) -> str:
        caps = [
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "MOVE",
            "UIDPLUS",
            "CHILDREN",
            f"APPENDLIMIT={MAX_LITERAL}",
        ]
        if self.state is State.NOT_AUTHENTICATED:
            if self.starttls_available and not self.tls_active:
                caps.append("STARTTLS")
            # LOGINDISABLED (RFC 9051 §6.2.3, §7.2.2): no password before TLS.
            caps.append("AUTH=PLAIN" if self.login_allowed else "LOGINDISABLED")
        return " ".join(caps)

    def greeting(self) -> list[Output]:
        caps = self.capabilities()
        text = f"* OK [CAPABILITY {caps}] {self.hostname} MailFlow Lab IMAP ready\r\n"
        return [Send(text.encode(), "imap.greeting")]

    def bye(self, text: str) -> list[Output]:
        """The server ends the session on its own (idle timeout, shutdown)."""
        if self.closed:
            return []
        self.state = State.LOGOUT
        return [Send(f"* BYE {text}\r\n".encode(), "imap.bye"), Close()]

    def poll(self) -> list[Output]:
        """While IDLE: one push per change someone else made to the selected mailbox.
        With defer_reads the listing is a StorageCalls request first; the pushes come
        from storage_done."""
        if self._mode != "idle" or self.selected is None or self.mailboxes is None:
            return []
        self._untagged, self._after = [], []
        return self._start(self._poll_steps(), self._pushes)

    def _poll_steps(self) -> Steps:
        sel = self.selected
        assert sel is not None
        try:
            current = yield from self.call("messages", sel.name)
        except (KeyError, OSError):
            return None
        self._untagged += sel.refresh(current, True)
        yield from self.claim_recent()
        return None

    def _pushes(self, _result: Result) -> list[Output]:
        lines, after = self._untagged, self._after
        self._untagged, self._after = [], []
        return [*(Send(line, _push_key(line)) for line in lines), *after]

    def receive_data(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        if self.closed:
            return out
        self._buf += data
        while self._buf and not self.closed and self._mode != "reading":
            if self._skip_left:
                n = min(self._skip_left, len(self._buf))
                del self._buf[:n]
                self._skip_left -= n
                if not self._skip_left:
                    self._overlong, self._overlong_size = bytearray(), 0  # drop rest of line
                    self._reject_after_skip = True
                continue
            if self._literal_left:
                n = min(self._literal_left, len(self._buf))
                self._pending += self._buf[:n]
                del self._buf[:n]
                self._literal_left -= n
                continue
            nl = self._buf.find(b"\n")
            if nl < 0:
                if self._overlong is not None or len(self._buf) > MAX_LINE + 2:
                    self._keep_overlong(bytes(self._buf))
                    self._buf.clear()
                break
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            if self._overlong is not None or len(line) > MAX_LINE + 2:
                self._keep_overlong(line)
                out += self._reject_overlong()
                continue
            out += self._on_line(line)
        return out

    # -- framing ---------------------------------------------------------------
    def _keep_overlong(self, chunk: bytes) -> None:
        if self._overlong is None:
            self._overlong = bytearray(self._pending)
            self._overlong_size = len(self._pending)
            self._pending.clear()
        room = _SHOWN_OVERLONG - len(self._overlong)
        self._overlong += chunk[: max(room, 0)]
        self._overlong_size += len(chunk)

    def _reject_overlong(self) -> list[Output]:
        shown = bytes(self._overlong or b"")
        size = self._overlong_size
        self._overlong, self._overlong_size = None, 0
        if self._reject_after_skip:
            # The rest of a command whose literal was refused: already answered.
            self._reject_after_skip = False
            return []
        tag, name = sniff(shown)
        key = event_name(name)
        detail = {"octets": str(size)}
        if size > len(shown):
            detail["truncated"] = f"showing the first {len(shown)} of {size} octets"
        reply = f"Command line too long (limit {MAX_LINE} octets)"
        return [
            ClientSent(shown, f"imap.{key}", detail),
            Send(_completion(tag, "BAD", reply), f"imap.{key}.bad"),
        ]

    def _on_line(self, line: bytes) -> list[Output]:
        if self._mode == "idle":
            return self._idle_line(line)
        if self._mode == "sasl":
            return self._sasl_line(line)
        self._pending += line
        m = LITERAL_AT_END.search(line)
        if m is None:
            raw = bytes(self._pending)
            self._pending.clear()
            return self._execute(raw)
        size, sync = int(m.group(1)), not m.group(2)
        tag, name = sniff(bytes(self._pending))
        refusal = None
        if size > MAX_LITERAL or len(self._pending) + size > MAX_LITERAL + 64 * MAX_LINE:
            refusal = ("NO", f"[TOOBIG] Literal of {size} octets is over the {MAX_LITERAL} limit")
        elif sync:
            refusal = self._precheck(tag, name)
        if refusal is None:
            self._literal_left = size
            return [Send(b"+ Ready for literal\r\n", "imap.continue")] if sync else []
        raw = bytes(self._pending)
        self._pending.clear()
        if not sync:
            self._skip_left = size  # LITERAL+: the client sends it anyway
        key = event_name(name)
        return [
            ClientSent(raw, f"imap.{key}"),
            Send(_completion(tag, *refusal), f"imap.{key}.{refusal[0].lower()}"),
        ]

    def _precheck(self, tag: str | None, name: str | None) -> tuple[str, str] | None:
        """Refuse a synchronizing literal early when the command cannot succeed anyway."""
        if tag is None:
            return ("BAD", "Invalid tag")
        if name not in COMMANDS:
            return ("BAD", "Unknown command")
        return _state_error(self, COMMANDS[name][1])

    # -- running commands -------------------------------------------------------------
    def _execute(self, raw: bytes) -> list[Output]:
        try:
            cmd = parse_command(raw)
        except ParseError as exc:
            tag, name = sniff(raw)
            key = event_name(name)
            return [
                ClientSent(raw, f"imap.{key}"),
                Send(_completion(tag, "BAD", f"Syntax error: {exc}"), f"imap.{key}.bad"),
            ]
        key = event_name(cmd.name)
        out: list[Output] = [ClientSent(raw, f"imap.{key}", _detail(cmd))]
        entry = COMMANDS.get(cmd.name)
        if entry is None:
            text = f"Unknown command {cmd.name}"
            return [*out, Send(_completion(cmd.tag, "BAD", text), f"imap.{key}.bad")]
        handler, states, _ = entry
        self._untagged, self._after = [], []
        return out + self._start(self._run(handler, states, cmd), self._replier(cmd))

    def _run(self, handler: Handler, states: frozenset[State], cmd: Command) -> Steps:
        """A command from start to reply: the handler, then the look at the selected
        mailbox every reply ends with (untagged EXISTS/EXPUNGE/FETCH, RFC 3501 §7)."""
        self._listed = None
        result = _state_error(self, states)
        if result is None:
            result = yield from self._handle(handler, cmd)
            if result is None:  # the command goes on (IDLE, AUTHENTICATE)
                return None
        yield from self._refresh(cmd)
        return result

    def _handle(self, handler: Handler, cmd: Command) -> Steps:
        try:
            result = handler(self, cmd)
            if isinstance(result, Generator):
                result = yield from result
        except CommandError as exc:
            return exc.status, exc.text
        except (KeyError, FileNotFoundError):
            return "NO", "[NONEXISTENT] No such mailbox or message"
        except OSError as exc:
            return "NO", f"[SERVERBUG] Storage error: {exc.strerror or exc}"
        return result

    def _ending(self, cmd: Command, status: str, text: str) -> Steps:
        """IDLE's DONE: only the look at the selected mailbox is left to do."""
        yield from self._refresh(cmd)
        return status, text

    def _replier(self, cmd: Command) -> Callable[[Result], list[Output]]:
        def reply(result: Result) -> list[Output]:
            if result is None:  # a continuation: "+ ..." and the lines that follow
                return list(self._after)
            return self._complete(cmd, *result)

        return reply

    def _start(self, steps: Steps, finish: Callable[[Result], list[Output]]) -> list[Output]:
        """Run `steps` until done (then `finish` makes the outputs) or until it needs
        storage work: then the request is the last output, and lines the client sends
        meanwhile wait in the buffer, so replies keep the commands' order."""
        self._steps, self._finish = steps, finish
        return self._step()

    def _step(self) -> list[Output]:
        result = self._drive()
        if result is _SUSPENDED:
            if self._mode != "reading":
                self._resume_mode = self._mode
            self._mode = "reading"
            assert self._read is not None
            return [self._read]
        finish, self._finish = self._finish, None
        assert finish is not None
        return finish(result)

    def _continue(self) -> list[Output]:
        """The adapter answered: go on with the waiting steps, then with whatever the
        client sent meanwhile."""
        self._mode, self._read = self._resume_mode, None
        out = self._step()
        if self._mode != "reading":
            out += self.receive_data(b"")
        return out

    def messages_loaded(self, loaded: dict[str, ParsedMessage]) -> list[Output]:
        """The adapter's answer to ReadMessages: the messages it found, by key (a
        message expunged meanwhile is simply absent). Runs the waiting command on and
        then whatever the client sent meanwhile."""
        if self._mode != "reading" or not isinstance(self._read, ReadMessages):
            return []
        mailbox = self._read.mailbox
        self._batch.update(((mailbox, key), msg) for key, msg in loaded.items())
        return self._continue()

    def storage_done(self, results: list[Any], error: BaseException | None = None) -> list[Output]:
        """The adapter's answer to StorageCalls: each call's result in order, or the
        exception that stopped the batch (the command answers NO; nothing else is lost)."""
        if self._mode != "reading" or not isinstance(self._read, StorageCalls):
            return []
        self._results, self._throw = list(results), error
        return self._continue()

    def summaries_loaded(
        self, loaded: dict[str, Summary], results: list[Any] | None = None
    ) -> list[Output]:
        """The adapter's answer to ReadSummaries: the index records it found, by key,
        and the results of the request's `calls` (None: they failed)."""
        if self._mode != "reading" or not isinstance(self._read, ReadSummaries):
            return []
        mailbox = self._read.mailbox
        self._summaries = {(mailbox, key): s for key, s in loaded.items()}
        self._results = list(results) if results is not None else []
        return self._continue()

    def messages_written(
        self, keys: list[str | None], error: BaseException | None = None
    ) -> list[Output]:
        """The adapter's answer to WriteMessages: each message's new key, in order (None:
        a copy's source was gone), or the exception writing raised."""
        if self._mode != "reading" or not isinstance(self._read, WriteMessages):
            return []
        self._written, self._throw = list(keys), error
        return self._continue()

    def files_removed(self, paths: list[str], error: BaseException | None = None) -> list[Output]:
        """The adapter's answer to RemoveFiles: the relative paths it removed."""
        if self._mode != "reading" or not isinstance(self._read, RemoveFiles):
            return []
        self._removed, self._throw = list(paths), error
        return self._continue()

    def removed(self) -> list[str]:
        """The paths the last RemoveFiles removed (see files_removed)."""
        return self._removed

    def written(self) -> list[str | None]:
        """The keys of the messages the last WriteMessages wrote (see messages_written)."""
        return self._written

    def call(self, op: str, *args: Any) -> Generator[Need, None, Any]:
        """One backend call (`yield from conn.call("create", name)`): a StorageCalls
        request answered off the loop when the adapter does storage."""
        (result,) = yield from self.calls(Call(op, args))
        return result

    def calls(self, *calls: Call) -> Generator[Need, None, list[Any]]:
        """Several backend calls in one request (one trip to the storage thread)."""
        if not self.defer_reads:  # in-memory backend: calling costs nothing
            return run_calls(self.user_mailboxes(), calls)
        yield Need("", (), calls=calls)
        results, self._results = self._results, []
        return results

    def _drive(self) -> Result:
        """Run a generator handler until it finishes or needs messages nobody has yet."""
        steps = self._steps
        assert steps is not None
        try:
            while True:
                error, self._throw = self._throw, None
                need = steps.throw(error) if error is not None else next(steps)
                if need.calls and not need.summaries:  # keep the current batch
                    assert self.defer_reads, "an in-memory backend is called directly"
                    self._read = StorageCalls(need.calls)
                    return _SUSPENDED
                self._batch, self._summaries = {}, {}
                if need.store:
                    assert self.defer_reads, "only a deferring connection asks to write"
                    self._read = WriteMessages(need.mailbox, need.store)
                    return _SUSPENDED
                if need.remove:
                    assert self.defer_reads, "only a deferring connection asks to remove"
                    self._read = RemoveFiles(need.mailbox, need.remove)
                    return _SUSPENDED
                if need.summaries:
                    if self.defer_reads:
                        self._read = ReadSummaries(need.mailbox, need.keys, need.calls)
                        return _SUSPENDED
                    self._summarize_here(need.mailbox, need.keys)
                    if need.calls:
                        self._results = run_calls(self.user_mailboxes(), need.calls)
                    continue
                missing = []
                for key in need.keys:
                    msg = self._cache.get((need.mailbox, key))
                    if msg is not None:
                        self._batch[(need.mailbox, key)] = msg
                    else:
                        missing.append(key)
                if not missing:
                    continue
                if self.defer_reads:
                    self._read = ReadMessages(need.mailbox, tuple(missing), need.text)
                    return _SUSPENDED
                for key in missing:  # in-memory backend: reading costs nothing
                    with contextlib.suppress(KeyError, FileNotFoundError):
                        data = self.user_mailboxes().read(need.mailbox, key)
                        self._batch[(need.mailbox, key)] = ParsedMessage(data)
        except StopIteration as stop:
            self._steps, self._batch, self._summaries = None, {}, {}
            return stop.value
        except CommandError as exc:
            self._steps, self._batch, self._summaries = None, {}, {}
            return exc.status, exc.text
        except (KeyError, FileNotFoundError):
            self._steps, self._batch, self._summaries = None, {}, {}
            return "NO", "[NONEXISTENT] No such mailbox or message"
        except OSError as exc:
            self._steps, self._batch, self._summaries = None, {}, {}
            return "NO", f"[SERVERBUG] Storage error: {exc.strerror or exc}"

    def _refresh(self, cmd: Command) -> Generator[Need, None, None]:
        """What changed in the selected mailbox meanwhile, for the untagged lines."""
        sel = self.selected
        if sel is None or self.mailboxes is None or self.closed:
            return
        entry = COMMANDS.get(cmd.name)
        expunge_ok = entry[2] if entry else True
        listed, self._listed = self._listed, None
        try:
            if listed is not None and listed[0] == sel.name:
                current = listed[1]  # taken in the command's last trip: no extra one
            else:
                current = yield from self.call("messages", sel.name)
        except (KeyError, OSError):
            pass
        else:
            self._untagged += sel.refresh(current, expunge_ok)
        yield from self.claim_recent()
        if self.selected is not None and self.selected.new_keywords():
            # The set of flags grew: tell the client first (RFC 3501 §7.2.6).
            lines = commands.flag_lines(self.selected.keywords, self.selected.readonly)
            self._untagged[:0] = [f"{line}\r\n".encode() for line in lines]

    def _complete(self, cmd: Command, status: str, text: str) -> list[Output]:
        data = b"".join(self._untagged) + _completion(cmd.tag, status, text)
        suffix = self._reply_key or status.lower()
        out: list[Output] = [Send(data, f"imap.{event_name(cmd.name)}.{suffix}")]
        out += self._after
        self._untagged, self._after, self._reply_key = [], [], None
        return out

    # -- helpers for command handlers --------------------------------------------------
    def untagged(self, line: bytes | str) -> None:
        data = line.encode() if isinstance(line, str) else line
        self._untagged.append(data if data.endswith(b"\r\n") else data + b"\r\n")

    def note(self, text: str, key: str) -> None:
        self._after.append(MailboxNote(text, key))

    def changed(self, mailbox: str) -> None:
        if self.user is not None and MailboxChanged(self.user, mailbox) not in self._after:
            self._after.append(MailboxChanged(self.user, mailbox))

    def user_mailboxes(self) -> UserMailboxes:
        assert self.mailboxes is not None
        return self.mailboxes

    def load(self, mailbox: str, key: str) -> ParsedMessage:
        """A message of the current batch (see reads.Need). KeyError: it is gone."""
        cache_key = (mailbox, key)
        msg = self._batch.get(cache_key) or self._cache.get(cache_key)
        if msg is None:
            if self.defer_reads:
                raise KeyError(key)  # asked for but not found: expunged meanwhile
            msg = ParsedMessage(self.user_mailboxes().read(mailbox, key))
        self._cache[cache_key] = msg
        self._cache.move_to_end(cache_key)
        while len(self._cache) > _CACHE_MESSAGES:
            self._cache.popitem(last=False)
        return msg

    def listed_with(self, mailbox: str) -> None:
        """The last request carried Call("messages", (mailbox,)) and nothing changes
        the folder from here to the reply: the reply's look at it may use that."""
        if self._results and self._results[0] is not None:
            self._listed = (mailbox, self._results[0])
        self._results = []

    def batch_summaries(self) -> dict[tuple[str, str], Summary]:
        """The current batch's index records by (mailbox, key)."""
        return self._summaries

    def summary(self, mailbox: str, key: str) -> Summary:
        """The index record of a message of the current batch. KeyError: it is gone."""
        return self._summaries[(mailbox, key)]

    def _summarize_here(self, mailbox: str, keys: tuple[str, ...]) -> None:
        """In-memory backend (tests, predict mode): reading costs nothing."""
        for key in keys:
            with contextlib.suppress(KeyError, FileNotFoundError):
                data = self.user_mailboxes().read(mailbox, key)
                self._summaries[(mailbox, key)] = summarize(key, data)

    def claim_recent(self) -> Generator[Need, None, None]:
        """This read-write session is the first to see these messages: they are \\Recent
        here and for no later session (RFC 3501 §2.3.2). In a Maildir that is the move
        from new/ to cur/ (as Dovecot does); the backend's set_flags with unchanged
        flags makes it."""
        sel = self.selected
        if sel is None or self.mailboxes is None or not sel.unclaimed:
            return
        claimed, sel.unclaimed = sel.unclaimed, []
        renames = [
            Call("set_flags", (sel.name, e.key, e.flags), missing_ok=True)
            for e in claimed
            if not e.gone
        ]
        if not renames:
            return
        try:
            paths = yield from self.calls(*renames)
        except OSError:  # left in new/: \Recent for the next session instead
            return
        moved = [p for p in paths if p is not None]
        if moved:
            shown = ", ".join(moved[:_SHOWN_MOVES])
            more = len(moved) - _SHOWN_MOVES
            if more > 0:
                shown += f" … ({more} more)"
            self.note(f"new/ → cur/ ({len(moved)}): {shown}", "maildir.recent")

    def logged_in(self, user: str, mailboxes: UserMailboxes) -> tuple[str, str]:
        self.user = user.lower()
        self.mailboxes = mailboxes
        self.state = State.AUTHENTICATED
        return "OK", f"[CAPABILITY {self.capabilities()}] Logged in as {self.user}"

    def privacy_required(self) -> tuple[str, str]:
        """LOGIN/AUTHENTICATE before TLS where passwords need TLS (RFC 9051 §6.2.3, §7.1).
        Not a failed login: the password was never checked."""
        self._reply_key = "privacyrequired"
        return "NO", _PRIVACY_REQUIRED

    def login_failed(self, text: str = _BAD_CREDENTIALS) -> tuple[str, str]:
        self.login_failures += 1
        if self.login_failures >= MAX_LOGIN_FAILURES:
            self.state = State.LOGOUT
            self._after += [Send(b"* BYE Too many failed logins, goodbye\r\n", "imap.bye"), Close()]
        return "NO", text

    def begin_tls(self) -> None:
        # Anything pipelined after STARTTLS was sent in clear: drop it (RFC 3501 §6.2.1).
        self._buf.clear()
        self.tls_active = True
        self._after.append(StartTLS())

    def logout(self, files: list[str] | None = None) -> None:
        """`files`: the selected folder's files, shown as the mailbox's final state."""
        if self.selected is not None and self.mailboxes is not None:
            name = self.selected.name
            files = files or []
            count = f"{len(files)} message{'' if len(files) == 1 else 's'}"
            text = f"{name}: {count}" + (" — " + ", ".join(files) if files else "")
            self.note(text, "maildir.state")
        self.state = State.LOGOUT
        self.selected = None
        self._after.append(Close())

    def wait_for_lines(self, mode: str, cmd: Command, prompt: bytes) -> None:
        """IDLE and AUTHENTICATE: the next lines belong to this command."""
        self._mode = mode
        self._waiting = cmd
        self._after.append(Send(prompt, "imap.continue"))

    # -- lines inside IDLE / AUTHENTICATE --------------------------------------------------
    def _resume(self) -> Command:
        cmd = self._waiting
        assert cmd is not None
        self._mode, self._waiting = "command", None
        self._untagged, self._after = [], []
        return cmd

    def _idle_line(self, line: bytes) -> list[Output]:
        cmd = self._resume()
        out: list[Output] = [ClientSent(line, "imap.done")]
        if line.rstrip(b"\r\n").upper() == b"DONE":
            ending = self._ending(cmd, "OK", "IDLE terminated")
        else:
            ending = self._ending(cmd, "BAD", "Expected DONE to end IDLE")
        return out + self._start(ending, self._replier(cmd))

    def _sasl_line(self, line: bytes) -> list[Output]:
        cmd = self._resume()
        text = line.rstrip(b"\r\n")
        detail = {"masked": "****"} if text not in (b"", b"*") else {}
        if text == b"*":
            return [
                ClientSent(line, "imap.auth.response"),
                *self._complete(cmd, "BAD", "Authentication cancelled"),
            ]
        decoded = sasl_shown(text)
        if decoded is not None:
            detail["decoded"] = decoded
        out: list[Output] = [ClientSent(line, "imap.auth.response", detail)]
        steps = self._run(lambda c, _: finish_plain(c, text), _ANY, cmd)
        return out + self._start(steps, self._replier(cmd))


def _completion(tag: str | None, status: str, text: str) -> bytes:
    return f"{tag or '*'} {status} {text}\r\n".encode()


def _state_error(conn: ImapConnection, states: frozenset[State]) -> tuple[str, str] | None:
    if conn.state in states:
        return None
    if conn.state is State.NOT_AUTHENTICATED:
        return "BAD", "Command not valid in this state: log in first"
    if states == _SELECTED:
        return "BAD", "Command not valid in this state: select a mailbox first"
    if states == _NOT_AUTHED:
        return "BAD", "Command not valid in this state: already authenticated"
    return "BAD", "Command not valid in this state"


def _push_key(line: bytes) -> str:
    for word, key in ((b" EXISTS", "exists"), (b" EXPUNGE", "expunge"), (b" FETCH", "fetch")):
        if word in line:
            return f"imap.push.{key}"
    return "imap.push"


def _detail(cmd: Command) -> dict[str, str]:
    if cmd.name == "LOGIN" and cmd.args:
        try:
            user = text_arg(cmd.args[0])
        except CommandError:
            return {}
        return {"masked": f"{cmd.tag} LOGIN {user} ****"}
    if cmd.name == "AUTHENTICATE" and len(cmd.args) >= 2 and not isinstance(cmd.args[1], list):
        ir = cmd.args[1]
        mech = cmd.args[0].value if isinstance(cmd.args[0], Atom) else "?"
        detail = {"masked": f"{cmd.tag} AUTHENTICATE {mech} ****"}
        decoded = sasl_shown(ir.value.encode() if isinstance(ir, Atom) else ir)
        if decoded is not None:
            detail["decoded"] = decoded
        return detail
    return {}


# name -> (handler, states where it is valid, may the reply carry untagged EXPUNGE)
COMMANDS: dict[str, tuple[Handler, frozenset[State], bool]] = {
    "CAPABILITY": (commands.capability, _ANY, True),
    "NOOP": (commands.noop, _ANY, True),
    "LOGOUT": (commands.logout, _ANY, True),
    "STARTTLS": (commands.starttls, _NOT_AUTHED, True),
    "LOGIN": (commands.login, _NOT_AUTHED, True),
    "AUTHENTICATE": (commands.authenticate, _NOT_AUTHED, True),
    "ID": (commands.id_, _ANY, True),
    "ENABLE": (commands.enable, _AUTHED, True),
    "NAMESPACE": (commands.namespace, _AUTHED, True),
    "LIST": (commands.list_, _AUTHED, True),
    "LSUB": (commands.lsub, _AUTHED, True),
    "STATUS": (commands.status, _AUTHED, True),
    "CREATE": (commands.create, _AUTHED, True),
    "DELETE": (commands.delete, _AUTHED, True),
    "RENAME": (commands.rename, _AUTHED, True),
    "SUBSCRIBE": (commands.subscribe, _AUTHED, True),
    "UNSUBSCRIBE": (commands.unsubscribe, _AUTHED, True),
    "SELECT": (commands.select, _AUTHED, True),
    "EXAMINE": (commands.select, _AUTHED, True),
    "APPEND": (commands.append, _AUTHED, True),
    "IDLE": (commands.idle, _AUTHED, True),
    "CHECK": (commands.noop, _SELECTED, True),
    "CLOSE": (commands.close, _SELECTED, True),
    "UNSELECT": (commands.close, _SELECTED, True),
    "EXPUNGE": (commands.expunge, _SELECTED, True),
    "SEARCH": (commands.search, _SELECTED, False),
    "FETCH": (commands.fetch, _SELECTED, False),
    "STORE": (commands.store, _SELECTED, False),
    "COPY": (commands.copy, _SELECTED, True),
    "MOVE": (commands.copy, _SELECTED, True),
    "UID SEARCH": (commands.search, _SELECTED, True),
    "UID FETCH": (commands.fetch, _SELECTED, True),
    "UID STORE": (commands.store, _SELECTED, True),
    "UID COPY": (commands.copy, _SELECTED, True),
    "UID MOVE": (commands.copy, _SELECTED, True),
    "UID EXPUNGE": (commands.expunge, _SELECTED, True),
}
