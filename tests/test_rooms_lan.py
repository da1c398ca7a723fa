"""A class on the classroom network: MAILFLOW_HOST on a LAN address. Rooms need the
teacher password, the lab's mail listeners stay on loopback, the join address is the
one the teacher's browser used (or MAILFLOW_PUBLIC_URL)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from served import Served

from app.__main__ import classroom_password
from app.config import ConfigError, Settings

LAN = "192.168.1.10"


def test_a_lan_address_is_a_classroom_not_the_internet() -> None:
    s = Settings(host=LAN)
    s.check()  # allowed without MAILFLOW_PUBLIC: only the LAN reaches it
    assert s.is_classroom_lan and s.teacher_only
    assert s.lab_bind_host == "127.0.0.1"
    assert Settings(host=LAN, lab_host=LAN).lab_bind_host == LAN  # opened on purpose
    with pytest.raises(ConfigError, match="MAILFLOW_PUBLIC=1"):
        Settings(host="0.0.0.0").check()  # every interface, maybe the Internet: consent
    assert not Settings(host="8.8.8.8").is_classroom_lan


def test_a_password_is_made_and_printed_when_none_is_set() -> None:
    settings, note = classroom_password(Settings(host=LAN))
    assert len(settings.teacher_password) >= 12 and settings.teacher_password in note
    assert f"http://{LAN}:8000/classroom" in note
    kept, none = classroom_password(Settings(host=LAN, teacher_password="chosen-one"))
    assert kept.teacher_password == "chosen-one" and none == ""
    assert classroom_password(Settings())[1] == ""  # loopback: no password needed


def test_rooms_on_the_lan_need_the_teacher_and_join_at_the_teachers_address(
    tmp_path: Path,
) -> None:
    s = Served(tmp_path, host=LAN, teacher_password="class-pass-123", lab=True).start()
    try:
        # The lab's mail listeners are on loopback although the web app is on the LAN.
        assert s.app.state.lab.host == "127.0.0.1"
        student = httpx.Client(base_url=s.url)
        refused = student.post("/classroom", data={"scenario": "basic-pop3"})
        assert refused.status_code == 403
        assert student.get("/classroom").headers["location"].startswith("/teacher/login")
        # The teacher's browser opened http://192.168.1.10:8000 (Host header).
        teacher = httpx.Client(base_url=s.url, headers={"Host": f"{LAN}:8000"},
                               follow_redirects=True)
        teacher.post("/teacher/login", data={"password": "class-pass-123", "next": "/classroom"})
        page = teacher.post("/classroom", data={"scenario": "basic-pop3"})
        code = re.search(r'data-room-code="(\w{6})"', page.text)
        assert page.status_code == 200 and code
        assert f"http://{LAN}:8000/r/{code.group(1)}" in page.text
        qr = teacher.get(f"/classroom/{code.group(1)}/qr.svg")
        assert qr.headers["content-type"].startswith("image/svg+xml") and b"<svg" in qr.content
    finally:
        s.stop()


def test_behind_a_proxy_the_join_address_is_the_public_url(tmp_path: Path) -> None:
    s = Served(tmp_path, public_url="https://mail.school.example").start()
    try:
        teacher = httpx.Client(base_url=s.url, follow_redirects=True)
        page = teacher.post("/classroom", data={"scenario": "basic-pop3"})
        code = re.search(r'data-room-code="(\w{6})"', page.text)
        assert code and f"https://mail.school.example/r/{code.group(1)}" in page.text
    finally:
        s.stop()
