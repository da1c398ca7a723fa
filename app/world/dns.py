"""The sandbox's DNS: a table of records loaded from data, answered in memory.

The relaying MTA asks it for MX and A records exactly as a real MTA would ask a
resolver (RFC 5321 §5.1), and each query and answer becomes an event.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DNS_FILE = Path(__file__).resolve().parent.parent / "content" / "world" / "dns.toml"


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    type: str
    value: str
    preference: int = 0
    ttl: int = 3600

    def zone_line(self) -> str:
        """The record as a zone-file line, the way dig prints an answer."""
        if self.type == "MX":
            return f"{self.name}. {self.ttl} IN MX {self.preference} {self.value}."
        if self.type == "TXT":
            return f'{self.name}. {self.ttl} IN TXT "{self.value}"'
        return f"{self.name}. {self.ttl} IN {self.type} {self.value}"


class SimulatedDNS:
    def __init__(self, records: list[Record]) -> None:
        self.records = list(records)

    @classmethod
    def load(cls, path: Path = DNS_FILE) -> SimulatedDNS:
        data = tomllib.loads(path.read_text("utf-8"))
        return cls([Record(**r) for r in data.get("record", [])])

    def query(self, name: str, rtype: str) -> list[Record]:
        name = name.lower().rstrip(".")
        found = [r for r in self.records if r.name == name and r.type == rtype]
        if rtype == "MX":
            # Lower preference first (RFC 5321 §5.1).
            found.sort(key=lambda r: r.preference)
        return found

    def add(self, record: Record) -> None:
        self.records.append(record)

    def remove(self, name: str, rtype: str) -> None:
        self.records = [r for r in self.records if not (r.name == name and r.type == rtype)]
