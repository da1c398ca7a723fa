"""Command handlers. Each takes the connection and the parsed command, queues untagged
lines with `conn.untagged(...)` and returns the tagged status and text (or None when
the command continues with more client lines, as IDLE and AUTHENTICATE do).

A handler that needs storage is a generator: every backend call goes through
`yield from conn.call(...)` / `conn.calls(...)` (a StorageCalls request the adapter
answers off the event loop), never `conn.user_mailboxes().method(...)` directly."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING

from app.protocols.imap.fetch import (
    FetchItem,
    FetchSubject,
    parse_fetch_items,
    render,
    summary_renderer,
)
from app.protocols.imap.mime import ParsedMessage
from app.protocols.imap.parser import Atom, Command, Token
from app.protocols.imap.reads import Call, Need, NeedsBody, NewMessage, batches, chunks
from app.protocols.imap.sasl import finish_plain
from app.protocols.imap.search import SearchSubject, parse_search_plan
from app.protocols.imap.state import State
from app.protocols.imap.summary import Summary
from app.protocols.imap.view import Entry, SelectedMailbox
from app.protocols.imap.wire import (
    SYSTEM_FLAGS,
    astring_out,
    atom_arg,
    bad,
    compress_numbers,
    format_flags,
    mailbox_arg,
    no,
    parse_date_time,
    parse_flags,
    seqset_arg,
    text_arg,
)

if TYPE_CHECKING:
    from app.protocols.imap.server import ImapConnection

Result = tuple[str, str] | None
Steps = Generator[Need, None, Result]  # handlers that need message contents (reads.py)
DELIMITER = "."
SPECIAL_USE = {"Sent": "\\Sent", "Trash": "\\Trash", "Drafts": "\\Drafts", "Junk": "\\Junk"}


def _args(cmd: Command, low: int, high: int | None = None) -> list[Token]:
    high = low if high is None else high
    if not low <= len(cmd.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise bad(f"{cmd.name} takes {want} arguments, got {len(cmd.args)}")
    return cmd.args


# -- any state -----------------------------------------------------------------
def capability(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 0)
    conn.untagged(f"* CAPABILITY {conn.capabilities()}")
    return "OK", "CAPABILITY completed"


def noop(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 0)
    return "OK", f"{cmd.name} completed"


def logout(conn: ImapConnection, cmd: Command) -> Steps:
    _args(cmd, 0)
    conn.untagged("* BYE MailFlow Lab IMAP server logging out")
    files: list[str] | None = None
    if conn.selected is not None:  # the folder's files, shown as its final state
        with contextlib.suppress(OSError):
            files = yield from conn.call("listing", conn.selected.name)
    conn.logout(files)
    return "OK", "LOGOUT completed"


def id_(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 1)  # the client's own ID list (or NIL): nothing to do with it
    conn.untagged('* ID ("name" "MailFlow Lab" "vendor" "MailFlow Lab")')
    return "OK", "ID completed"


# -- not authenticated ---------------------------------------------------------------
def starttls(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 0)
    if conn.tls_active:
        raise bad("TLS is already active")
    if not conn.starttls_available:
        raise bad("STARTTLS is not offered here")
    conn.begin_tls()
    return "OK", "Begin TLS negotiation now"


def login(conn: ImapConnection, cmd: Command) -> Result:
    user, password = (text_arg(t) for t in _args(cmd, 2))
    if not conn.login_allowed:
        return conn.privacy_required()
    mailboxes = conn.backend.login(user, password)
    if mailboxes is None:
        return conn.login_failed()
    return conn.logged_in(user, mailboxes)


def authenticate(conn: ImapConnection, cmd: Command) -> Result:
    args = _args(cmd, 1, 2)
    mechanism = atom_arg(args[0], "mechanism").upper()
    if not conn.login_allowed:  # refused before any credentials are asked for
        return conn.privacy_required()
    if mechanism != "PLAIN":
        return "NO", f"Unsupported authentication mechanism {mechanism}"
    if len(args) == 2:  # SASL-IR (RFC 4959): the response came with the command
        ir = args[1]
        if isinstance(ir, list):
            raise bad("The initial response must be base64 text")
        return finish_plain(conn, ir.value.encode() if isinstance(ir, Atom) else ir)
    conn.wait_for_lines("sasl", cmd, b"+ \r\n")
    return None


# -- authenticated ----------------------------------------------------------------------
def enable(conn: ImapConnection, cmd: Command) -> Result:
    if not cmd.args:
        raise bad("ENABLE needs at least one capability")
    conn.untagged("* ENABLED")  # none of the ENABLE-able extensions is implemented
    return "OK", "ENABLE completed"


def namespace(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 0)
    conn.untagged(f'* NAMESPACE (("" "{DELIMITER}")) NIL NIL')
    return "OK", "NAMESPACE completed"


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    full = reference + pattern
    rx = "".join(
        ".*" if c == "*" else f"[^{re.escape(DELIMITER)}]*" if c == "%" else re.escape(c)
        for c in full
    )
    return re.compile(rx + r"\Z")


def _matches(rx: re.Pattern[str], name: str) -> bool:
    if name == "INBOX":  # INBOX is case-insensitive, everything else is not
        return bool(rx.match(name) or re.compile(rx.pattern, re.I).match(name))
    return bool(rx.match(name))


def _list_reply(conn: ImapConnection, cmd: Command, verb: str) -> Steps:
    args = list(cmd.args)
    if args and isinstance(args[0], list):  # LIST-EXTENDED selection options: ignore
        args.pop(0)
    if len(args) < 2:
        raise bad(f"{verb} needs a reference and a mailbox pattern")
    reference, pattern = text_arg(args[0]), text_arg(args[1])
    if not pattern:
        conn.untagged(f'* {verb} (\\Noselect) "{DELIMITER}" ""')
        return "OK", f"{verb} completed"
    if verb == "LIST":
        listed = yield from conn.call("list")
        existing = names = set(listed)
    else:  # one trip for both: the folders and the subscriptions file
        listed, subscribed = yield from conn.calls(Call("list"), Call("subscriptions"))
        existing, names = set(listed), set(subscribed)
    rx = _pattern(reference, pattern)
    parents = set()
    for name in names:  # levels of hierarchy above each name
        parts = name.split(DELIMITER)
        parents.update(DELIMITER.join(parts[:i]) for i in range(1, len(parts)))
    if verb == "LIST":
        candidates = names | parents
    else:
        # LSUB lists only what is subscribed; an unsubscribed parent comes only where
        # "%" stops above a subscribed name, and then as \Noselect (RFC 3501 §6.3.9).
        candidates = names | ({p for p in parents if p not in names} if "%" in pattern else set())
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        if not _matches(rx, name):
            continue
        attrs = []
        if name not in existing or (verb == "LSUB" and name not in names):
            attrs.append("\\Noselect")
        if verb == "LIST":
            children = any(o.startswith(name + DELIMITER) for o in existing)
            attrs.append("\\HasChildren" if children else "\\HasNoChildren")
            if name in SPECIAL_USE:
                attrs.append(SPECIAL_USE[name])
        line = f'* {verb} ({" ".join(attrs)}) "{DELIMITER}" '.encode() + astring_out(name)
        conn.untagged(line)
    return "OK", f"{verb} completed"


def list_(conn: ImapConnection, cmd: Command) -> Steps:
    return (yield from _list_reply(conn, cmd, "LIST"))


def lsub(conn: ImapConnection, cmd: Command) -> Steps:
    return (yield from _list_reply(conn, cmd, "LSUB"))


def status(conn: ImapConnection, cmd: Command) -> Steps:
    box_tok, items_tok = _args(cmd, 2)
    name = mailbox_arg(box_tok)
    if not isinstance(items_tok, list) or not items_tok:
        raise bad("STATUS needs a list of items")
    items = [atom_arg(tok, "status item").upper() for tok in items_tok]
    for item in items:
        if item not in _STATUS_ITEMS:
            raise bad(f"Unknown STATUS item {item}")
    # One trip to storage for the listing and whatever else was asked for.
    wanted = [Call("messages", (name,))]
    wanted += [Call(item.lower(), (name,)) for item in ("UIDNEXT", "UIDVALIDITY") if item in items]
    try:
        found = yield from conn.calls(*wanted)
    except KeyError:
        return "NO", "[NONEXISTENT] No such mailbox"
    messages = found[0]
    extra = dict(zip([c.op.upper() for c in wanted[1:]], found[1:], strict=True))
    values = []
    for item in items:
        if item == "MESSAGES":
            value = len(messages)
        elif item == "RECENT":
            value = sum(m.subdir == "new" for m in messages)
        elif item in extra:  # UIDNEXT, UIDVALIDITY
            value = extra[item]
        elif item == "UNSEEN":
            value = sum("\\Seen" not in m.flags for m in messages)
        elif item == "DELETED":
            value = sum("\\Deleted" in m.flags for m in messages)
        elif item == "SIZE":  # RFC 8438: the octets as IMAP sends them (CRLF)
            value = 0
            for group in chunks(messages):  # from the folder index, not the files
                yield Need(name, tuple(m.key for m in group), summaries=True)
                for m in group:
                    with contextlib.suppress(KeyError):
                        value += conn.summary(name, m.key).size
        values.append(f"{item} {value}")
    conn.untagged(b"* STATUS " + astring_out(name) + f" ({' '.join(values)})".encode())
    return "OK", "STATUS completed"


_STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE"}
)


def _new_name(token: Token) -> str:
    name = mailbox_arg(token).rstrip(DELIMITER)
    # '"' and '\\' are fine: they travel quoted and escaped (RFC 3501 §4.3) and are
    # ordinary characters in a directory name. "/" would be a path, "*"/"%" wildcards.
    bad_chars = set("/\x00*%") | {chr(c) for c in range(32)} | {"\x7f"}
    if (
        not name
        or name.upper() == "INBOX"
        or any(c in bad_chars for c in name)
        or any(not part for part in name.split(DELIMITER))
    ):
        raise no(f"[CANNOT] Invalid mailbox name {name!r}")
    return name


def create(conn: ImapConnection, cmd: Command) -> Steps:
    (tok,) = _args(cmd, 1)
    if mailbox_arg(tok) == "INBOX":
        return "NO", "[ALREADYEXISTS] INBOX always exists"
    name = _new_name(tok)
    try:
        yield from conn.call("create", name)
    except FileExistsError:  # the storage's own check: another session may have just made it
        return "NO", "[ALREADYEXISTS] Mailbox already exists"
    return "OK", "CREATE completed"


def delete(conn: ImapConnection, cmd: Command) -> Steps:
    (tok,) = _args(cmd, 1)
    name = mailbox_arg(tok)
    if name == "INBOX":
        return "NO", "[CANNOT] INBOX cannot be deleted"
    if not (yield from conn.call("exists", name)):
        return "NO", "[NONEXISTENT] No such mailbox"
    if conn.selected is not None and conn.selected.name == name:
        _deselect(conn)
    yield from conn.calls(Call("delete", (name,)), Call("set_subscribed", (name, False)))
    return "OK", "DELETE completed"


def rename(conn: ImapConnection, cmd: Command) -> Steps:
    old_tok, new_tok = _args(cmd, 2)
    old = mailbox_arg(old_tok)
    if old == "INBOX":
        return "NO", "[CANNOT] Renaming INBOX is not supported here"
    new = _new_name(new_tok)
    old_exists, new_exists = yield from conn.calls(Call("exists", (old,)), Call("exists", (new,)))
    if not old_exists:
        return "NO", "[NONEXISTENT] No such mailbox"
    if new_exists:
        return "NO", "[ALREADYEXISTS] Target mailbox already exists"
    if conn.selected is not None and conn.selected.name == old:
        _deselect(conn)
    try:
        yield from conn.call("rename", old, new)  # all or nothing: the backend undoes a half
    except OSError as exc:
        return "NO", f"[CANNOT] RENAME failed, nothing was moved: {exc.strerror or exc}"
    return "OK", "RENAME completed"


def subscribe(conn: ImapConnection, cmd: Command) -> Steps:
    (tok,) = _args(cmd, 1)
    name = mailbox_arg(tok)
    if not (yield from conn.call("exists", name)):
        return "NO", "[NONEXISTENT] No such mailbox"
    yield from conn.call("set_subscribed", name, True)
    return "OK", "SUBSCRIBE completed"


def unsubscribe(conn: ImapConnection, cmd: Command) -> Steps:
    (tok,) = _args(cmd, 1)
    yield from conn.call("set_subscribed", mailbox_arg(tok), False)
    return "OK", "UNSUBSCRIBE completed"


def _deselect(conn: ImapConnection) -> None:
    conn.selected = None
    conn.state = State.AUTHENTICATED


def select(conn: ImapConnection, cmd: Command) -> Steps:
    args = cmd.args
    if not args or len(args) > 2:  # a second argument would be select parameters (CONDSTORE)
        raise bad(f"{cmd.name} takes a mailbox name")
    name = mailbox_arg(args[0])
    readonly = cmd.name == "EXAMINE"
    if conn.selected is not None:
        _deselect(conn)
    try:  # one trip to storage: the listing (UIDs given there) and the UID numbers
        listed, uidvalidity, uidnext = yield from conn.calls(
            Call("messages", (name,)), Call("uidvalidity", (name,)), Call("uidnext", (name,))
        )
    except KeyError:
        return "NO", "[NONEXISTENT] No such mailbox"
    view = SelectedMailbox(name, readonly, listed)
    for line in flag_lines(view.keywords, readonly):
        conn.untagged(line)
    conn.untagged(f"* {len(view)} EXISTS")
    conn.untagged(f"* {sum(e.recent for e in view.entries)} RECENT")
    first_unseen = next((i for i, e in enumerate(view.entries, 1) if "\\Seen" not in e.flags), None)
    if first_unseen is not None:
        conn.untagged(f"* OK [UNSEEN {first_unseen}] First unseen message")
    conn.untagged(f"* OK [UIDVALIDITY {uidvalidity}] UIDs valid")
    conn.untagged(f"* OK [UIDNEXT {uidnext}] Predicted next UID")
    conn.selected = view
    conn.state = State.SELECTED
    yield from conn.claim_recent()
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return "OK", f"[{mode}] {cmd.name} completed"


def flag_lines(keywords: set[str], readonly: bool) -> list[str]:
    """FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): the keywords in use, and \\*
    because any new keyword is kept too (beside the Maildir, in the folder's index)."""
    flags = " ".join([*SYSTEM_FLAGS, *sorted(keywords)])
    permanent = "" if readonly else f"{flags} \\*"
    return [
        f"* FLAGS ({flags})",
        f"* OK [PERMANENTFLAGS ({permanent})] Flags and keywords are kept on the server",
    ]


def append(conn: ImapConnection, cmd: Command) -> Steps:
    args = list(cmd.args)
    if len(args) < 2:
        raise bad("APPEND needs a mailbox and a message")
    name = mailbox_arg(args.pop(0))
    message = args.pop()
    if not isinstance(message, bytes):
        raise bad("The message must be a literal")
    flags: frozenset[str] = frozenset()
    when: float | None = None
    for extra in args:
        if isinstance(extra, list) and not flags:
            flags = parse_flags(extra)
        elif isinstance(extra, bytes) and when is None:
            when = parse_date_time(extra.decode("ascii", "replace"))
        else:
            raise bad('APPEND takes: mailbox [(flags)] ["date-time"] {literal}')
    if not (yield from conn.call("exists", name)):
        return "NO", "[TRYCREATE] No such mailbox"
    if conn.defer_reads:  # the file is written (and fsynced) off the event loop
        yield Need(name, (), store=(NewMessage(message, None, flags, when),))
        (key,) = conn.written()
        assert key is not None
        info, validity = yield from conn.calls(
            Call("register", (name, key, flags)), Call("uidvalidity", (name,))
        )
    else:
        mbx = conn.user_mailboxes()
        info, validity = mbx.append(name, message, flags, when), mbx.uidvalidity(name)
    conn.changed(name)
    return "OK", f"[APPENDUID {validity} {info.uid}] APPEND completed"


def idle(conn: ImapConnection, cmd: Command) -> Result:
    _args(cmd, 0)
    conn.wait_for_lines("idle", cmd, b"+ idling\r\n")
    return None


# -- selected ------------------------------------------------------------------------------
def _sel(conn: ImapConnection) -> SelectedMailbox:
    assert conn.selected is not None
    return conn.selected


def _writable(conn: ImapConnection) -> SelectedMailbox:
    sel = _sel(conn)
    if sel.readonly:
        raise no("[READ-ONLY] The mailbox was opened with EXAMINE")
    return sel


def _disk_flags(
    conn: ImapConnection, sel: SelectedMailbox
) -> Generator[Need, None, dict[int, frozenset[str]]]:
    # Decide on the flags as they are on disk now: another device may have changed them.
    listed = yield from conn.call("messages", sel.name)
    return {m.uid: m.flags for m in listed}


def _store_flags(
    conn: ImapConnection, sel: SelectedMailbox, changes: list[tuple[Entry, frozenset[str]]]
) -> Generator[Need, None, set[str]]:
    """Give these entries these flags: the file renames (and keyword index writes) in
    one trip to storage. Returns the keys of the messages that were gone."""
    if not changes:
        return set()
    paths = yield from conn.calls(
        *(Call("set_flags", (sel.name, e.key, flags), missing_ok=True) for e, flags in changes)
    )
    gone = set()
    for (e, flags), path in zip(changes, paths, strict=True):
        if path is None:
            gone.add(e.key)
        else:
            _flags_set(conn, sel, e, flags, path)
    return gone


def _flags_set(
    conn: ImapConnection, sel: SelectedMailbox, e: Entry, flags: frozenset[str], path: str
) -> None:
    before, e.flags = e.flags, flags
    if {f for f in before if f.startswith("\\")} == {f for f in flags if f.startswith("\\")}:
        # Only keywords changed: the file keeps its name, the folder's index changes.
        words = " ".join(sorted(f for f in flags if not f.startswith("\\"))) or "(none)"
        conn.note(f"{path} — keywords: {words}", "maildir.keywords")
    else:
        conn.note(path, "maildir.flags")
    conn.changed(sel.name)


def _remove(
    conn: ImapConnection, sel: SelectedMailbox, entries: list[Entry]
) -> Generator[Need, None, set[int]]:
    """Delete the entries' files (off the event loop when the adapter does storage)."""
    keys = [e.key for e in entries]
    if conn.defer_reads and keys:
        yield Need(sel.name, (), remove=tuple(keys))
        removed = conn.removed()
    else:
        removed = yield from conn.call("remove", sel.name, keys)
    for path in removed:
        conn.note(f"removed {path}", "maildir.remove")
    if entries:
        conn.changed(sel.name)
    return {e.uid for e in entries}


def close(conn: ImapConnection, cmd: Command) -> Steps:
    _args(cmd, 0)
    sel = _sel(conn)
    if cmd.name == "CLOSE" and not sel.readonly:
        # CLOSE expunges silently (RFC 3501 §6.4.2); UNSELECT does not.
        disk = yield from _disk_flags(conn, sel)
        doomed = [e for e in sel.entries if "\\Deleted" in disk.get(e.uid, ())]
        yield from _remove(conn, sel, doomed)
    _deselect(conn)
    return "OK", f"{cmd.name} completed"


def expunge(conn: ImapConnection, cmd: Command) -> Steps:
    uid = cmd.name.startswith("UID ")
    args = _args(cmd, 1 if uid else 0)
    sel = _writable(conn)
    disk = yield from _disk_flags(conn, sel)
    chosen = sel.select(seqset_arg(args[0]), True) if uid else list(enumerate(sel.entries, 1))
    doomed = [e for _, e in chosen if "\\Deleted" in disk.get(e.uid, ())]
    for line in sel.drop((yield from _remove(conn, sel, doomed))):
        conn.untagged(line)
    return "OK", f"{cmd.name} completed"


def _no_body() -> ParsedMessage:
    raise NeedsBody


def search(conn: ImapConnection, cmd: Command) -> Steps:
    uid = cmd.name.startswith("UID ")
    predicate, reads_body = parse_search_plan(cmd.args)
    sel = _sel(conn)
    max_seq, max_uid = len(sel), sel.max_uid

    def matches(
        seq: int, e: Entry, load: Callable[[], ParsedMessage], summary: Summary | None = None
    ) -> bool:
        subject = SearchSubject(
            seq, e.uid, e.flags, e.internaldate, e.recent, max_seq, max_uid, load, summary
        )
        return predicate(subject)

    # First pass on what the session knows (flags, dates, numbers), then on the folder
    # index (header fields, sizes); only messages whose answer depends on more than
    # that are read, in batches, off the event loop.
    hits: list[int] = []
    pending: list[tuple[int, Entry]] = []
    for seq, e in enumerate(sel.entries, 1):
        if e.gone:
            continue
        try:
            if matches(seq, e, _no_body):
                hits.append(seq)
        except NeedsBody:
            pending.append((seq, e))
    unindexed: list[tuple[int, Entry]] = []
    for chunk in [] if reads_body else chunks(pending):
        yield Need(sel.name, tuple(e.key for _, e in chunk), summaries=True)
        for seq, e in chunk:
            try:
                if matches(seq, e, _no_body, conn.summary(sel.name, e.key)):
                    hits.append(seq)
            except NeedsBody:
                unindexed.append((seq, e))
            except KeyError:
                continue  # expunged by someone else meanwhile
    pending = pending if reads_body else unindexed
    for group in batches(pending, [e.size for _, e in pending]):
        yield Need(sel.name, tuple(e.key for _, e in group), text=True)
        for seq, e in group:
            try:
                if matches(seq, e, lambda key=e.key: conn.load(sel.name, key)):
                    hits.append(seq)
            except (KeyError, FileNotFoundError):
                continue  # expunged by someone else meanwhile
    hits.sort()
    found = [sel.entries[seq - 1].uid if uid else seq for seq in hits]
    conn.untagged(" ".join(["* SEARCH", *map(str, found)]))
    return "OK", f"{cmd.name} completed"


def fetch(conn: ImapConnection, cmd: Command) -> Steps:
    uid = cmd.name.startswith("UID ")
    args = _args(cmd, 2)
    sel = _sel(conn)
    chosen = [(seq, e) for seq, e in sel.select(seqset_arg(args[0]), uid) if not e.gone]
    items = parse_fetch_items(args[1])
    if uid and not any(i.kind == "UID" for i in items):
        items.insert(0, FetchItem("UID"))
    sets_seen = not sel.readonly and any(i.sets_seen for i in items)
    needs_message = any(i.needs_message for i in items)
    disk = (yield from _disk_flags(conn, sel)) if sets_seen else {}
    # Header fields, sizes, ENVELOPE and BODYSTRUCTURE come from the folder index
    # (one request for the lot); anything else reads the files, a batch at a time.
    indexed = needs_message and all(i.from_summary for i in items)
    has_flags = any(i.kind == "FLAGS" for i in items)
    if indexed:
        groups: Iterable[Sequence[tuple[int, Entry]]] = chunks(chosen)
    elif needs_message:
        groups = batches(chosen, [e.size for _, e in chosen])
    else:
        groups = [chosen]
    if indexed and not sets_seen:
        # The common case (a mail program listing a folder): a tight loop over the index.
        renderers = [summary_renderer(i) for i in items]
        groups = list(chunks(chosen))
        for n, chunk in enumerate(groups, 1):
            # The last trip also lists the folder for the look every reply ends with.
            listing = (Call("messages", (sel.name,), missing_ok=True),) if n == len(groups) else ()
            yield Need(sel.name, tuple(e.key for _, e in chunk), summaries=True, calls=listing)
            if listing:
                conn.listed_with(sel.name)
            found = conn.batch_summaries()
            for seq, e in chunk:
                s = found.get((sel.name, e.key))
                if s is None:
                    continue  # expunged meanwhile
                flags, uid, date = e.shown_flags, e.uid, e.internaldate
                parts = b" ".join([r(uid, flags, date, s) for r in renderers])
                conn.untagged(b"* %d FETCH (%s)\r\n" % (seq, parts))
        return "OK", f"{cmd.name} completed"
    for group in groups:
        if needs_message:  # read off the event loop by the adapter
            yield Need(sel.name, tuple(e.key for _, e in group), summaries=indexed)
        unseen = [
            (e, disk[e.uid] | {"\\Seen"})
            for _, e in group
            if sets_seen and e.uid in disk and "\\Seen" not in disk[e.uid]
        ]
        # The batch's \Seen renames in one trip to storage (the read batch stays loaded).
        gone = yield from _store_flags(conn, sel, unseen)
        marked_keys = {e.key for e, _ in unseen} - gone
        for seq, e in group:
            if e.key in gone:
                continue
            try:
                summary = conn.summary(sel.name, e.key) if indexed else None
                msg = conn.load(sel.name, e.key) if needs_message and not indexed else None
            except (KeyError, FileNotFoundError):
                continue
            marked = e.key in marked_keys
            subject = FetchSubject(e.uid, e.shown_flags, e.internaldate, msg, summary)
            parts = [render(i, subject) for i in items]
            if marked and not has_flags:
                parts.append(b"FLAGS " + format_flags(e.shown_flags))  # \Seen set on the way
            conn.untagged(b"* %d FETCH (" % seq + b" ".join(parts) + b")")
    return "OK", f"{cmd.name} completed"


def store(conn: ImapConnection, cmd: Command) -> Steps:
    uid = cmd.name.startswith("UID ")
    if len(cmd.args) < 3:
        raise bad("STORE needs a message set, FLAGS/+FLAGS/-FLAGS and flags")
    sel = _sel(conn)
    chosen = sel.select(seqset_arg(cmd.args[0]), uid)
    action = atom_arg(cmd.args[1], "store action").upper()
    silent = action.endswith(".SILENT")
    op = action.removesuffix(".SILENT")
    if op not in ("FLAGS", "+FLAGS", "-FLAGS"):
        raise bad(f"Unknown STORE action {action}")
    rest = cmd.args[2:]
    flags = parse_flags(rest[0] if len(rest) == 1 and isinstance(rest[0], list) else rest)
    _writable(conn)
    disk = yield from _disk_flags(conn, sel)
    chosen = [(seq, e) for seq, e in chosen if not e.gone and e.uid in disk]
    changes = []
    for _, e in chosen:
        now = disk[e.uid]
        new = flags if op == "FLAGS" else now | flags if op == "+FLAGS" else now - flags
        if new != now:
            changes.append((e, frozenset(new)))
        else:
            e.flags = now
    gone = yield from _store_flags(conn, sel, changes)  # the renames, off the loop
    for seq, e in chosen:
        if e.key in gone:
            continue
        if not silent:
            uid_part = b"UID %d " % e.uid if uid else b""
            flags_out = format_flags(e.shown_flags)
            conn.untagged(b"* %d FETCH (%sFLAGS %s)" % (seq, uid_part, flags_out))
    return "OK", f"{cmd.name} completed"


def copy(conn: ImapConnection, cmd: Command) -> Steps:
    uid = cmd.name.startswith("UID ")
    move = cmd.name.endswith("MOVE")
    set_tok, box_tok = _args(cmd, 2)
    sel = _writable(conn) if move else _sel(conn)
    chosen = [(s, e) for s, e in sel.select(seqset_arg(set_tok), uid) if not e.gone]
    dst = mailbox_arg(box_tok)
    if not (yield from conn.call("exists", dst)):
        return "NO", "[TRYCREATE] No such mailbox"
    src_uids, dst_uids, moved = [], [], []
    validity = 0
    if conn.defer_reads:  # read and written off the event loop, UIDs given after
        disk = yield from _disk_flags(conn, sel)
        chosen = [(s, e) for s, e in chosen if e.uid in disk]
        copies = tuple(
            NewMessage(None, (sel.name, e.key), disk[e.uid], e.internaldate) for _, e in chosen
        )
        yield Need(dst, (), store=copies)
        written = [(e, key) for (_, e), key in zip(chosen, conn.written(), strict=True) if key]
        # The UIDs in one trip to storage (the destination's listing gives them).
        *infos, validity = yield from conn.calls(
            *(Call("register", (dst, key, disk[e.uid])) for e, key in written),
            Call("uidvalidity", (dst,)),
        )
        for (e, _), info in zip(written, infos, strict=True):
            src_uids.append(e.uid)
            dst_uids.append(info.uid)
            moved.append(e)
    else:
        mbx = conn.user_mailboxes()
        validity = mbx.uidvalidity(dst)
        for _, e in chosen:
            try:
                info = mbx.copy(sel.name, e.key, dst)
            except (KeyError, FileNotFoundError):
                continue
            src_uids.append(e.uid)
            dst_uids.append(info.uid)
            moved.append(e)
    code = ""
    if src_uids:
        code = (
            f"[COPYUID {validity} {compress_numbers(src_uids)} "
            f"{compress_numbers(dst_uids)}] "
        )
        conn.changed(dst)
    if not move:
        return "OK", f"{code}{cmd.name} completed"
    if code:  # RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs
        conn.untagged(f"* OK {code.strip()} Moved")
    for line in sel.drop((yield from _remove(conn, sel, moved))):
        conn.untagged(line)
    return "OK", f"{cmd.name} completed"
