"""The stage: the network a scenario's mail crosses, derived from its recording.

Pure: a recording's events (and a language) in, a `Stage` out; no I/O, no clock.
Nothing is drawn by hand per scenario:

- every actor that appears in an event becomes a node, placed by its `slot` in
  app/content/actors.toml (column in the order the mail passes, row 1 the main line);
  the base actors of the journey (Alice's MUA … Bob's MUA) are always drawn, so the
  picture a learner builds stays the same from scenario to scenario;
- every event is mapped to one link (its *hop*): a line of a session to the pair that
  spoke, a note to the pair it names, or, when it names no other actor (a TLS
  handshake, a DKIM signature), to its session's hop;
- the mail itself is followed through the recorded replies and Maildir notes: a 250
  after DATA puts it in that server's queue and takes it out of the sender's, a
  `maildir.deliver` note makes a file, `maildir.flags` marks it \\Seen or \\Deleted,
  `maildir.remove` removes it, POP3's `+OK` to DELE marks it.

The same model is drawn as the full stage (one band, for screens and slides) and a
compact one (three bands, for phones); `templates/_stage.svg` renders either.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.events import Event
from app.notes import localized
from app.web import i18n
from app.web.flow_view import actor_label, actor_labels, actor_role, panels

MAILBOX = "mailbox"
# The journey every scenario is drawn on, even where a story stops early.
BASE_ACTORS = ("mua-alice", "msa-a", "mta-a", "dns", "mta-b", "mda-b")
BASE_MAILBOX = "mailbox:bob@b.example"
BASE_READER = "mua-bob"
# Links drawn even when a story does not use them (dimmed then). The MSA and the
# relaying MTA are one host's two roles: the queue joins them, no protocol does.
BASE_LINKS = (
    ("mua-alice", "msa-a"),
    ("msa-a", "mta-a"),
    ("mta-a", "dns"),
    ("mta-a", "mta-b"),
    ("mta-b", "mda-b"),
    ("mda-b", "@mailbox"),
    ("@mailbox", "@server"),
    ("@server", "@reader"),
)
# One host's queue: the MTA relays what the MSA accepted (app/world/spool.py).
QUEUE_OF = {"mta-a": "msa-a"}
WIRE = ("SMTP", "LMTP", "POP3", "IMAP", "DNS")
DEFAULT_SLOT = (3.5, 3)


def region_of(col: float) -> int:
    """Which of the four stages ①–④ a column belongs to."""
    if col < 3:
        return 1
    if col < 5:
        return 2
    if col < 7:
        return 3
    return 4


@dataclass(frozen=True)
class Dims:
    """Sizes in SVG user units: the full stage is 1920 wide for 8 columns."""

    pitch: float = 240
    row_h: float = 190
    node_w: float = 170
    node_h: float = 112
    role_size: int = 30
    name_size: int = 18
    names: bool = True
    top: float = 84  # room for the region titles and facts
    band_gap: float = 0
    packet_h: float = 40
    packet_font: int = 20
    packet_chars: int = 18
    link_font: int = 17


FULL = Dims()
COMPACT = Dims(
    pitch=220, row_h=168, node_w=196, node_h=84, role_size=44, name_size=0, names=False,
    top=84, band_gap=8, packet_h=48, packet_font=28, packet_chars=12, link_font=0,
)  # fmt: skip
# Bands: (regions, drawn right to left). The compact stage snakes: the second band runs
# back under the first, so the MX sits right above the MDA it hands the mail to.
FULL_BANDS: tuple[tuple[tuple[int, ...], bool], ...] = (((1, 2, 3, 4), False),)
COMPACT_BANDS: tuple[tuple[tuple[int, ...], bool], ...] = (((1, 2), False), ((3, 4), True))


@dataclass(frozen=True)
class Node:
    id: str
    role: str
    label: str
    lines: tuple[str, ...]  # the label broken into at most two lines
    sizes: tuple[float, ...]  # each line's font size: smaller only where it must, to fit
    x: float  # centre
    y: float
    w: float
    h: float
    col: float
    row: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2)


@dataclass(frozen=True)
class Link:
    id: str
    a: str
    b: str
    x1: float
    y1: float
    x2: float
    y2: float
    label: tuple[str, ...]  # protocol, ports (two short lines)
    used: bool
    tls: bool  # some line on it travelled inside TLS
    # Where the packet rests and starts, per direction (a→b and b→a): x, y, start x, start y.
    ab: tuple[float, float, float, float]
    ba: tuple[float, float, float, float]
    lx: float  # label position
    ly: float


@dataclass(frozen=True)
class Region:
    number: int
    title: str
    facts: str
    x: float
    y: float
    w: float
    h: float
    used: bool


@dataclass(frozen=True)
class Move:
    """What step n shows: the packet on a hop, in a direction."""

    step: int
    link: str  # "" when the event names no hop (a note an actor makes alone)
    src: str
    dst: str
    direction: str  # c2s, s2c, note
    tls: bool
    text: str  # the line, shortened for the packet
    live: str  # the text alternative: "MUA → MSA, SMTP 587, TLS: EHLO …"
    forward: bool  # travels a→b of its link


@dataclass(frozen=True)
class Mail:
    """One copy of the mail: in a queue, as a file in a mailbox, or read by a client."""

    id: int
    node: str
    kind: str  # queue, file, copy
    start: int  # first step it is there
    end: int  # first step it is gone (0: stays)
    seen: int = 0  # first step it is marked \\Seen
    deleted: int = 0  # first step it is marked for deletion
    x: float = 0
    y: float = 0

    def state(self, step: int) -> str:
        if step < self.start or (self.end and step >= self.end):
            return "gone"
        if self.deleted and step >= self.deleted:
            return "deleted"
        if self.seen and step >= self.seen:
            return "seen"
        return "here"


@dataclass(frozen=True)
class Stage:
    width: float
    height: float
    dims: Dims
    compact: bool
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    regions: tuple[Region, ...]
    moves: tuple[Move, ...]
    mails: tuple[Mail, ...]
    lang: str
    title: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def link(self, link_id: str) -> Link | None:
        return next((lk for lk in self.links if lk.id == link_id), None)

    def node(self, actor: str) -> Node | None:
        return next((n for n in self.nodes if n.id == actor), None)

    def packet_at(self, step: int) -> tuple[Move, float, float, float] | None:
        """The packet at step n (1-based): its move, rest x, y and the travel angle."""
        if step < 1 or step > len(self.moves):
            return None
        move = self.moves[step - 1]
        link = self.link(move.link)
        if link is not None:
            x, y, sx, sy = link.ab if move.forward else link.ba
            return move, x, y, math.degrees(math.atan2(y - sy, x - sx))
        node = self.node(move.src)
        if node is None:
            return None
        x, y = self.rest_under(node)
        return move, x, y, 0.0

    def rest_under(self, node: Node) -> tuple[float, float]:
        """Where a note an actor makes alone rests: under it, kept inside the stage."""
        box = packet_box(0, 0, self.dims)
        half = (box[2] - box[0]) / 2
        x = min(max(node.x, half + 2), self.width - half - 2)
        return round(x, 1), round(node.y + node.h / 2 + self.dims.packet_h / 2 + 8, 1)


# -- deriving ------------------------------------------------------------------------


def _slot(actor: str) -> tuple[float, int]:
    info = actor_labels().get(actor)
    if info is None and actor.startswith(MAILBOX + ":"):
        info = actor_labels().get(MAILBOX)
    if info and "slot" in info:
        col, row = info["slot"]
        return float(col), int(row)
    return DEFAULT_SLOT


def _known(actor: str) -> bool:
    return actor in actor_labels() or actor.startswith(MAILBOX + ":")


def _cast(events: Sequence[Event]) -> list[str]:
    """Every actor on the stage: the base journey, then the scenario's own, in order."""
    seen: dict[str, None] = {}
    for e in events:
        for actor in (e.src, e.dst):
            if _known(actor):
                seen.setdefault(actor, None)
    cast = dict.fromkeys(BASE_ACTORS)
    boxes = [a for a in seen if a.startswith(MAILBOX + ":") and _slot(a)[0] >= 5]
    if not boxes:
        cast[BASE_MAILBOX] = None
    servers = [a for a in seen if a in ("pop3-b", "imap-b")]
    if not servers:
        cast["pop3-b" if "pop3" in " ".join(e.key for e in events) else "imap-b"] = None
    readers = [a for a in seen if a.startswith("mua-bob")]
    if not readers:
        cast[BASE_READER] = None
    cast.update(seen)
    return list(cast)


def _base_pairs(cast: list[str]) -> list[tuple[str, str]]:
    first = {
        "@mailbox": next(a for a in cast if a.startswith(MAILBOX + ":") and _slot(a)[0] >= 5),
        "@server": next(a for a in cast if a in ("pop3-b", "imap-b")),
        "@reader": next(a for a in cast if a.startswith("mua-bob")),
    }
    return [(first.get(a, a), first.get(b, b)) for a, b in BASE_LINKS]


def hop_of(event: Event, session_hops: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The two actors whose link carries this event (client/speaker first as recorded)."""
    if event.direction != "note":
        return event.src, event.dst
    if event.src != event.dst and _known(event.src) and _known(event.dst):
        return event.src, event.dst
    return session_hops.get(event.session)


def _session_hops(events: Sequence[Event]) -> dict[str, tuple[str, str]]:
    hops: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.direction != "note" and e.session not in hops:
            hops[e.session] = (e.src, e.dst)
    return hops


def link_id(a: str, b: str) -> str:
    """One id per pair, whichever way a line travels: the order the mail passes."""
    first, second = sorted((a, b), key=lambda actor: (_slot(actor), actor))
    return f"{first}--{second}"


def _short(text: str, limit: int) -> str:
    line = text.split("\n", 1)[0]
    more = "\n" in text
    width = 0
    out = []
    for ch in line:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if width + w > limit:
            more = True
            break
        out.append(ch)
        width += w
    return "".join(out).rstrip() + ("…" if more else "")


def text_width(text: str, size: float) -> float:
    """Width of monospace text: wide (CJK) characters count twice."""
    return sum(
        (1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6) * size for c in text
    )


def sans_width(text: str, size: float) -> float:
    """Rough width of proportional text: wide (CJK) characters are 1 em, others 0.56."""
    return sum((1.0 if unicodedata.east_asian_width(c) in "WF" else 0.56) * size for c in text)


def _label_lines(label: str, dims: Dims) -> tuple[str, ...]:
    """A name in at most two lines that fit the node; a host name gets its own line."""
    room = dims.node_w - 14
    if sans_width(label, dims.name_size) <= room:
        return (label,)
    parts = label.rsplit(" ", 1)
    if len(parts) == 2 and re.fullmatch(r"[\w.\-@]+", parts[1]) and "." in parts[1]:
        return (parts[0], parts[1])
    return _two_lines(label, dims.name_size, room)


# A line may not start with these (Japanese line-breaking rules, 禁則).
_NO_LINE_START = set("のがはをにへとでもやゃゅょっァィゥェォャュョッー・、。，．）」』】ー")


def _two_lines(label: str, size: float, room: float) -> tuple[str, ...]:
    """Two lines from one name: at a space, after の or before （ first, else between
    any two wide characters; the cut that leaves the longer line shortest wins."""
    best: tuple[float, tuple[str, ...]] | None = None
    for i in range(1, len(label)):
        before, after = label[i - 1], label[i]
        natural = after == " " or before == "の" or after == "（"
        wide = unicodedata.east_asian_width(before) in "WF" or (
            unicodedata.east_asian_width(after) in "WF"
        )
        if not (natural or wide) or after in _NO_LINE_START:
            continue
        head, tail = label[:i].rstrip(), label[i:].lstrip()
        if not head or not tail:
            continue
        widest = max(sans_width(head, size), sans_width(tail, size))
        score = widest - (room / 2 if natural and widest <= room else 0)
        if best is None or score < best[0]:
            best = (score, (head, tail))
    return best[1] if best else (label,)


def _line_sizes(lines: tuple[str, ...], dims: Dims) -> tuple[float, ...]:
    """The name size, or smaller for a line that would not fit (never below 11 px)."""
    room = dims.node_w - 14
    sizes = []
    for line in lines:
        need = sans_width(line, 1.0)
        fit = room / need if need else dims.name_size
        sizes.append(max(11.0, min(float(dims.name_size), int(fit * 2) / 2)))
    return tuple(sizes)


def _t(lang: str, message: str) -> str:
    return i18n.translations(lang).gettext(message)


def derive(
    events: Sequence[Event],
    lang: str,
    *,
    compact: bool = False,
) -> Stage:
    """The stage of a recording, in `lang`, full or compact."""
    dims = COMPACT if compact else FULL
    bands = COMPACT_BANDS if compact else FULL_BANDS
    cast = _cast(events)
    placed = _place(cast)
    session_hops = _session_hops(events)

    # Bands: each a run of regions; columns and rows counted inside a band.
    band_of = {r: i for i, (group, _rev) in enumerate(bands) for r in group}
    cols_in: dict[int, list[float]] = {}
    rows_in: dict[int, list[int]] = {}
    for col, row in placed.values():
        b = band_of[region_of(col)]
        cols_in.setdefault(b, [])
        if col == int(col) and col not in cols_in[b]:
            cols_in[b].append(col)
        rows_in.setdefault(b, [1])
        if row not in rows_in[b]:
            rows_in[b].append(row)
    band_top: dict[int, float] = {}
    y = 0.0
    width = 0.0
    for b in range(len(bands)):
        cols_in.setdefault(b, [])
        cols_in[b].sort()
        rows_in.setdefault(b, [1])
        rows_in[b].sort()
        band_top[b] = y
        y += dims.top + len(rows_in[b]) * dims.row_h + dims.band_gap
        width = max(width, len(cols_in[b]) * dims.pitch)
    height = y - dims.band_gap

    def col_x(b: int, col: float) -> float:
        cols = cols_in[b]
        if col in cols:
            index: float = cols.index(col)
        else:  # a half column: between its neighbours
            below = [i for i, c in enumerate(cols) if c < col]
            index = (below[-1] + 0.5) if below else -0.5
        offset = (width - len(cols) * dims.pitch) / 2
        x = offset + index * dims.pitch + dims.pitch / 2
        return width - x if bands[b][1] else x

    def row_y(b: int, row: int) -> float:
        # A node sits high in its row: the packet rides in the room left under it.
        return band_top[b] + dims.top + rows_in[b].index(row) * dims.row_h + dims.node_h / 2 + 14

    nodes = []
    for actor in cast:
        col, row = placed[actor]
        b = band_of[region_of(col)]
        label = actor_label(actor, lang)
        nodes.append(
            Node(
                actor, actor_role(actor), label, (lines := _label_lines(label, dims)),
                _line_sizes(lines, dims), col_x(b, col),
                row_y(b, row), dims.node_w, dims.node_h, col, row,
            )
        )  # fmt: skip
    by_id = {n.id: n for n in nodes}

    # Links: the base journey, then every hop a line or a note travelled.
    pairs: dict[str, tuple[str, str]] = {}
    for a, b in _base_pairs(cast):
        pairs.setdefault(link_id(a, b), tuple(sorted((a, b), key=lambda x: (_slot(x), x))))
    facts: dict[str, dict[str, list]] = {}
    moves = []
    for step, e in enumerate(events, start=1):
        hop = hop_of(e, session_hops)
        lid = ""
        forward = True
        if hop and hop[0] != hop[1] and hop[0] in by_id and hop[1] in by_id:
            lid = link_id(*hop)
            ordered = tuple(sorted(hop, key=lambda x: (_slot(x), x)))
            pairs.setdefault(lid, ordered)  # type: ignore[arg-type]
            f = facts.setdefault(lid, {"proto": [], "ports": [], "tls": [], "used": [True]})
            if e.protocol in WIRE and e.protocol not in f["proto"]:
                f["proto"].append(e.protocol)
            if e.protocol in WIRE and e.port and e.protocol != "DNS" and e.port not in f["ports"]:
                f["ports"].append(e.port)
            if e.protocol == "DNS" and 53 not in f["ports"]:
                f["ports"].append(53)
            if e.tls:
                f["tls"].append(True)
            if e.direction == "note" and e.src in by_id and e.dst in by_id and e.src != e.dst:
                forward = pairs[lid][0] == e.src
            elif e.direction == "note":
                # A note on a session's hop (a TLS handshake) travels as the server speaks.
                forward = pairs[lid][0] == e.src
            else:
                forward = pairs[lid][0] == e.src
        shown = localized(e, lang)
        moves.append(
            Move(
                step, lid, e.src, e.dst, e.direction, e.tls,
                _short(shown, dims.packet_chars), _live(e, shown, lang), forward,
            )
        )  # fmt: skip

    obstacles = [n.box for n in nodes]
    links = []
    for lid, (a, b) in pairs.items():
        na, nb = by_id.get(a), by_id.get(b)
        if na is None or nb is None:
            continue
        f = facts.get(lid, {"proto": [], "ports": [], "tls": [], "used": []})
        label = (
            (" / ".join(f["proto"]), " · ".join(str(p) for p in f["ports"]))
            if f["proto"]
            else ((_t(lang, "queue"),) if QUEUE_OF.get(b) == a or QUEUE_OF.get(a) == b else ())
        )
        ab = _rest(na, nb, dims, obstacles, width, height)
        ba = _rest(nb, na, dims, obstacles, width, height)
        mx, my = (na.x + nb.x) / 2, (na.y + nb.y) / 2
        if abs(na.y - nb.y) > 1:  # a slanted hop: its label beside the line, not on it
            mx += dims.link_font * 2.2
            my += dims.link_font
        links.append(
            Link(
                lid, a, b, na.x, na.y, nb.x, nb.y, tuple(x for x in label if x),
                bool(f["used"]), bool(f["tls"]), ab, ba, mx, my - 14,
            )
        )  # fmt: skip

    regions = _regions(events, nodes, bands, band_of, band_top, rows_in, dims, width, lang)
    mails = _place_mails(_follow_mail(events, session_hops), by_id, dims)
    return Stage(width, height, dims, compact, tuple(nodes), tuple(links), regions,
                 tuple(moves), mails, lang)  # fmt: skip


def _place(cast: Iterable[str]) -> dict[str, tuple[float, int]]:
    taken: set[tuple[float, int]] = set()
    placed: dict[str, tuple[float, int]] = {}
    for actor in cast:
        col, row = _slot(actor)
        for delta in (0, 1, -1, 2, -2, 3):
            r = row + delta
            if 0 <= r <= 4 and (col, r) not in taken and not (r == 1 and col != int(col)):
                row = r
                break
        taken.add((col, row))
        placed[actor] = (col, row)
    return placed


def _live(e: Event, shown: str, lang: str) -> str:
    line = _short(shown, 60)
    src, dst = actor_role(e.src), actor_role(e.dst)
    if e.direction == "note":
        return f"{src}: {line}"
    secure = "TLS" if e.tls else _t(lang, "not encrypted")
    port = f" {e.port}" if e.port else ""
    return f"{src} → {dst}, {e.protocol}{port}, {secure}: {line}"


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def packet_box(x: float, y: float, dims: Dims) -> tuple[float, float, float, float]:
    w = text_width("M" * (dims.packet_chars + 3), dims.packet_font) + 2.4 * dims.packet_h
    return (x - w / 2, y - dims.packet_h / 2, x + w / 2, y + dims.packet_h / 2)


def _rest(
    src: Node, dst: Node, dims: Dims, obstacles: list, width: float, height: float
) -> tuple[float, float, float, float]:
    """Where the packet rests on the hop src→dst, and where it sets off.

    The packet never covers an actor: it rides just below the line (or above it), at
    the first point along the hop, from a little past the middle, whose box clears every
    node. It sets off beside the sender, so its travel shows the direction.
    """
    dx, dy = dst.x - src.x, dst.y - src.y
    length = math.hypot(dx, dy) or 1.0
    half = dims.node_h / 2 + dims.packet_h / 2 + 8
    pbox = packet_box(0, 0, dims)
    aside = (pbox[2] - pbox[0]) / 2 + 12
    # Below the line, above it, on it; a steep hop also beside it.
    shifts = [(0.0, half), (0.0, -half), (0.0, 0.0), (0.0, 1.6 * half), (0.0, -1.6 * half)]
    if abs(dy) > abs(dx):
        shifts = [(-aside, 0.0), (aside, 0.0), *shifts]
    for shift_x, shift in shifts:
        for t in (0.55, 0.45, 0.65, 0.35, 0.75, 0.25):
            x, y = src.x + dx * t + shift_x, src.y + dy * t + shift
            box = packet_box(x, y, dims)
            if box[0] < 0 or box[2] > width or box[1] < 0 or box[3] > height:
                continue
            if any(_overlaps(box, o) for o in obstacles):
                continue
            s = max(0.05, t - 0.35 * min(1.0, 600 / length))
            return (
                round(x, 1), round(y, 1),
                round(src.x + dx * s + shift_x, 1), round(src.y + dy * s + shift, 1),
            )  # fmt: skip
    x, y = (src.x + dst.x) / 2, (src.y + dst.y) / 2 + half
    return (round(x, 1), round(y, 1), round(src.x, 1), round(src.y + half, 1))


def _regions(events, nodes, bands, band_of, band_top, rows_in, dims, width, lang):
    names = {1: _t(lang, "Submission"), 2: _t(lang, "Relay"), 3: _t(lang, "Delivery"),
             4: _t(lang, "Retrieval")}  # fmt: skip
    circled = {1: "①", 2: "②", 3: "③", 4: "④"}
    views = {p.number: p for p in panels(list(events))}
    out = []
    for n in (1, 2, 3, 4):
        members = [node for node in nodes if region_of(node.col) == n]
        if not members:
            continue
        b = band_of[n]
        x0 = min(m.x for m in members) - dims.pitch / 2 + 4
        x1 = max(m.x for m in members) + dims.pitch / 2 - 4
        if n == 2:  # the relay region also holds the half column above/below it
            x0 = min(x0, min(m.x for m in members) - dims.pitch / 2 + 4)
        view = views.get(n)
        bits = []
        if view and view.used:
            if view.protocols:
                bits.append(" / ".join(view.protocols))
            if view.ports:
                bits.append(" · ".join(str(p) for p in view.ports))
            if view.tls:
                bits.append("TLS")
        else:
            bits.append(_t(lang, "not part of this story"))
        y0 = band_top[b] + 4
        h = dims.top + len(rows_in[b]) * dims.row_h - 8
        out.append(
            Region(
                n, f"{circled[n]} {names[n]}", " · ".join(bits), x0, y0, x1 - x0, h,
                bool(view and view.used),
            )
        )
    return tuple(out)


# -- the mail ------------------------------------------------------------------------

_FILE = re.compile(r"(?:new|cur|tmp)/([^\s:/]+)")


def _follow_mail(events: Sequence[Event], session_hops: dict[str, tuple[str, str]]) -> list[Mail]:
    """Each copy of the mail, from the recorded replies and Maildir notes."""
    mails: list[Mail] = []
    files: dict[str, int] = {}  # Maildir unique name -> index in mails
    session_box: dict[str, str] = {}
    for e in events:
        for actor in (e.src, e.dst):
            if actor.startswith(MAILBOX + ":"):
                session_box.setdefault(e.session, actor)
    pending_dele: dict[str, int] = {}

    def open_at(node: str, kind: str, step: int) -> None:
        mails.append(Mail(len(mails), node, kind, step, 0))

    def close_at(node: str, step: int) -> None:
        for i, m in enumerate(mails):
            if m.node == node and m.kind == "queue" and not m.end:
                mails[i] = _with(m, end=step)
                return

    for step, e in enumerate(events, start=1):
        if e.direction == "s2c" and e.key.endswith("data.end.250"):
            client = QUEUE_OF.get(e.dst, e.dst)
            close_at(client, step)
            if e.protocol == "SMTP":
                open_at(e.src, "queue", step)
        elif e.key == "maildir.deliver":
            m = _FILE.search(e.text)
            open_at(e.dst, "file", step)
            if m:
                files[m.group(1)] = len(mails) - 1
        elif e.key == "maildir.flags":
            m = _FILE.search(e.text)
            index = files.get(m.group(1)) if m else None
            flags = e.text.rsplit(":2,", 1)[1] if ":2," in e.text else ""
            if index is not None:
                mail = mails[index]
                if "S" in flags and not mail.seen:
                    mail = _with(mail, seen=step)
                if "T" in flags and not mail.deleted:
                    mail = _with(mail, deleted=step)
                if "T" not in flags and mail.deleted:
                    mail = _with(mail, deleted=0)
                mails[index] = mail
        elif e.key == "maildir.remove":
            m = _FILE.search(e.text)
            index = files.get(m.group(1)) if m else None
            if index is not None:
                mails[index] = _with(mails[index], end=step)
        elif e.protocol == "POP3" and e.direction == "c2s" and e.text.upper().startswith("DELE "):
            number = e.text.split()[1] if len(e.text.split()) > 1 else ""
            if number.isdigit():
                pending_dele[e.session] = int(number)
        elif e.protocol == "POP3" and e.direction == "s2c" and e.session in pending_dele:
            number = pending_dele.pop(e.session)
            box = session_box.get(e.session)
            if e.text.startswith("+OK") and box:
                present = [i for i, m in enumerate(mails) if m.node == box and not m.end]
                if 0 < number <= len(present):
                    index = present[number - 1]
                    if not mails[index].deleted:
                        mails[index] = _with(mails[index], deleted=step)
        elif (
            e.direction == "s2c"
            and e.key in ("pop3.retr.ok", "imap.fetch.ok")
            and ("octets" in e.text.split("\n", 1)[0] or "BODY[" in e.text)
        ):
            open_at(e.dst, "copy", step)
    return mails


def _with(mail: Mail, **changes: int) -> Mail:
    data = {**mail.__dict__, **changes}
    return Mail(**data)


def _place_mails(mails: list[Mail], nodes: dict[str, Node], dims: Dims) -> tuple[Mail, ...]:
    """Each copy sits on its node's top edge, side by side, so none covers a label."""
    count: dict[str, int] = {}
    out = []
    for m in mails:
        node = nodes.get(m.node)
        if node is None:
            continue
        k = count.get(m.node, 0)
        count[m.node] = k + 1
        x = node.x + node.w / 2 - 26 - (k % 4) * 30
        y = node.y - node.h / 2 - 14 - (k // 4) * 6
        out.append(_with(m, x=round(x, 1), y=round(y, 1)))  # type: ignore[arg-type]
    return tuple(out)


def ladder_actors(events: Sequence[Event]) -> list[str]:
    """The lifelines of the ladder view, in the order the mail passes."""
    seen: dict[str, None] = {}
    for e in events:
        for actor in (e.src, e.dst):
            if _known(actor):
                seen.setdefault(actor, None)
    return sorted(seen, key=lambda a: (_slot(a)[0], _slot(a)[1], a))
