"""The real app with the lab listeners on (served.Served with lab=True), plus the lab's
own accounts file, its live-view address and its ports."""

from __future__ import annotations

from pathlib import Path

from served import Served


class LabServer(Served):
    def __init__(self, data_dir: Path, accounts_toml: str | None = None) -> None:
        if accounts_toml is not None:
            (data_dir / "lab").mkdir(parents=True, exist_ok=True)
            (data_dir / "lab" / "accounts.toml").write_text(accounts_toml, "utf-8")
        super().__init__(data_dir, lab=True)

    def start(self) -> LabServer:
        super().start()
        return self

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/lab"

    def port(self, service: str) -> int:
        return self.app.state.lab.ports[service]
