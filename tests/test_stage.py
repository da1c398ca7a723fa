"""The stage model (app/web/stage.py), derived from real recordings of the scenarios."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from xml.etree import ElementTree

import pytest

from app.events import Event
from app.scenarios.model import load_all
from app.scenarios.runner import Recording
from app.web.stage import COMPACT, FULL, derive, packet_box, sans_width
from app.web.stage_render import render_stage, stage_moves

Rec = Callable[[str], Recording]
SVG = "{http://www.w3.org/2000/svg}"


def step_of(rec: Recording, key: str, n: int = 1) -> int:
    found = [i for i, e in enumerate(rec.events, start=1) if e.key == key]
    return found[n - 1]


def overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("slug", sorted(load_all()))
@pytest.mark.parametrize("compact", [False, True])
def test_every_line_has_a_hop_and_the_packet_never_covers_an_actor(
    scenario_recording: Rec, slug: str, compact: bool
) -> None:
    rec = scenario_recording(slug)
    stage = derive(rec.events, "en", compact=compact)
    dims = COMPACT if compact else FULL
    ids = {n.id for n in stage.nodes}
    assert len(stage.moves) == len(rec.events)
    boxes = [n.box for n in stage.nodes]
    for move in stage.moves:
        # A line between two actors always travels a drawn link between them.
        if move.direction != "note":
            link = stage.link(move.link)
            assert link is not None and {link.a, link.b} == {move.src, move.dst}, move
        else:
            assert move.link or move.src in ids, move
        at = stage.packet_at(move.step)
        assert at is not None
        box = packet_box(at[1], at[2], dims)
        assert not any(overlaps(box, b) for b in boxes), (move, box)
        assert box[0] >= 0 and box[1] >= 0
        assert box[2] <= stage.width and box[3] <= stage.height
    # Nodes never overlap each other.
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not overlaps(a, b)


@pytest.mark.parametrize("slug", sorted(load_all()))
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_actor_name_fits_its_box(scenario_recording: Rec, slug: str, lang: str) -> None:
    # Japanese names have no spaces to break at (アリスのメールソフト): they must still fit.
    stage = derive(scenario_recording(slug).events, lang)
    room = FULL.node_w - 14
    for node in stage.nodes:
        assert len(node.lines) <= 2, node
        for line, size in zip(node.lines, node.sizes, strict=True):
            assert sans_width(line, size) <= room, (node.id, line, size)
            assert size >= 11 and not line.startswith(("の", "）", " ")), (node.id, line)


def test_the_hop_of_a_note_dns_and_a_maildir_file(scenario_recording: Rec) -> None:
    rec = scenario_recording("basic-pop3")
    stage = derive(rec.events, "en")
    moves = stage.moves
    # A TLS handshake note belongs to the encrypted hop it finished on.
    tls = step_of(rec, "tls.handshake")
    assert moves[tls - 1].link == "mua-alice--msa-a" and moves[tls - 1].tls
    # DNS: the MTA → DNS link.
    assert moves[step_of(rec, "dns.query.mx") - 1].link == "mta-a--dns"
    assert moves[step_of(rec, "dns.answer.mx") - 1].forward is False
    # The file appearing in the Maildir: MDA → mailbox.
    deliver = step_of(rec, "maildir.deliver")
    assert moves[deliver - 1].link == "mda-b--mailbox:bob@b.example"
    # Directions: the EHLO goes a→b on its link, the 250 comes back.
    ehlo, reply = step_of(rec, "smtp.ehlo"), step_of(rec, "smtp.ehlo.250")
    assert moves[ehlo - 1].forward and not moves[reply - 1].forward
    assert moves[ehlo - 1].live.startswith("MUA → MSA, SMTP 587, not encrypted: EHLO")
    assert moves[step_of(rec, "smtp.ehlo", 2) - 1].live.startswith("MUA → MSA, SMTP 587, TLS:")
    # The links carry their protocol and port; the TLS one says so.
    link = stage.link("mua-alice--msa-a")
    assert link is not None and link.label == ("SMTP", "587") and link.tls


def test_the_mail_waits_in_queues_lands_as_a_file_and_pop3_removes_it_at_quit(
    scenario_recording: Rec,
) -> None:
    rec = scenario_recording("basic-pop3")
    stage = derive(rec.events, "en")
    queued_msa = step_of(rec, "smtp.data.end.250")
    queued_mx = step_of(rec, "smtp.data.end.250", 2)
    deliver = step_of(rec, "maildir.deliver")
    dele_ok = step_of(rec, "pop3.dele.ok")
    removed = step_of(rec, "maildir.remove")
    by_node = {m.node: m for m in stage.mails if m.kind != "copy"}
    msa, mx, box = by_node["msa-a"], by_node["mta-b"], by_node["mailbox:bob@b.example"]
    assert (msa.start, msa.end) == (queued_msa, queued_mx)  # relayed: gone from the MSA
    assert mx.start == queued_mx and mx.end == step_of(rec, "lmtp.data.end.250")
    assert box.start == deliver
    # DELE only marks it; the file goes when QUIT ends the session (UPDATE state).
    assert box.state(dele_ok - 1) == "here" and box.state(dele_ok) == "deleted"
    assert box.state(removed - 1) == "deleted" and box.state(removed) == "gone"
    # Bob's client holds a copy after RETR.
    assert any(m.kind == "copy" and m.node == "mua-bob" for m in stage.mails)


def test_imap_seen_marks_the_file_read_and_it_stays(scenario_recording: Rec) -> None:
    rec = scenario_recording("basic-imap")
    stage = derive(rec.events, "en")
    flags = step_of(rec, "maildir.flags")
    box = next(m for m in stage.mails if m.node == "mailbox:bob@b.example")
    assert box.state(flags - 1) == "here" and box.state(flags) == "seen"
    assert box.state(len(rec.events)) == "seen"


def test_imap_expunge_removes_what_store_deleted_marked(scenario_recording: Rec) -> None:
    rec = scenario_recording("imap-two-devices")
    stage = derive(rec.events, "en")
    removed = step_of(rec, "maildir.remove")
    gone = [m for m in stage.mails if m.end == removed]
    assert gone and all(m.deleted and m.deleted < removed for m in gone)


def test_a_scenario_adds_its_own_actors(scenario_recording: Rec) -> None:
    for slug, extra in [("op25b", "isp-fw"), ("mx-fallback", "mta-b2"), ("dnsbl", "host-bot")]:
        stage = derive(scenario_recording(slug).events, "ja")
        assert extra in {n.id for n in stage.nodes}, slug


@pytest.mark.parametrize("step", [0, 9, 56])
def test_standalone_svg_is_well_formed_with_values_and_no_external_references(
    scenario_recording: Rec, step: int
) -> None:
    svg = str(render_stage(scenario_recording("basic-pop3"), step, "ja", standalone=True))
    root = ElementTree.fromstring(svg)  # raises on anything that is not XML
    assert root.tag == f"{SVG}svg" and root.get("data-stage") == "full"
    assert "sans-serif" in root.get("font-family", "")
    for el in root.iter():
        for name, value in el.attrib.items():
            assert value != "" or name.startswith("data-"), (el.tag, name)
            assert "url(" not in value and not value.startswith(("http:", "https:", "//"))
    current = [el for el in root.iter() if el.get("aria-current") == "true"]
    packet = next(el for el in root.iter() if el.get("data-packet"))
    if step == 0:
        assert current == [] and packet.get("display") == "none"
    else:
        assert len(current) == 1 and packet.get("display") == "inline"


@pytest.mark.parametrize("slug", sorted(load_all()))
def test_the_stage_adds_at_most_12_kb_compressed(scenario_recording: Rec, slug: str) -> None:
    rec = scenario_recording(slug)
    block = "".join(
        [
            str(render_stage(rec, 0, "ja")),
            str(render_stage(rec, 0, "ja", compact=True)),
            stage_moves(rec, "ja"),
        ]
    )
    assert len(gzip.compress(block.encode())) <= 12 * 1024


def test_mail_text_cannot_break_out_of_the_stage_data_or_the_svg() -> None:
    event = Event(
        1, "s1", 1, "mua-alice", "msa-a", "SMTP", 587, True, "c2s",
        "Subject: </script><!--<script>alert(1)</script>", "smtp.data.content",
    )  # fmt: skip
    rec = Recording("basic-pop3", "en", (event,), 0.0, 0.0)
    data = stage_moves(rec, "en")
    assert "<" not in data and json.loads(data)[0][5].startswith("Subject: </script>")
    svg = str(render_stage(rec, 1, "en", standalone=True))
    ElementTree.fromstring(svg)
    assert "<script" not in svg and "&lt;/script&gt;" in svg


@pytest.mark.parametrize("slug", sorted(load_all()))
def test_every_scenario_exports_well_formed_slides(scenario_recording: Rec, slug: str) -> None:
    rec = scenario_recording(slug)
    for step in (0, len(rec.events) // 2, len(rec.events)):
        for lang in ("ja", "en"):
            root = ElementTree.fromstring(str(render_stage(rec, step, lang, standalone=True)))
            actors = {el.get("data-actor") for el in root.iter() if el.get("data-actor")}
            assert {"mua-alice", "msa-a", "dns", "mta-b", "mda-b"} <= actors
