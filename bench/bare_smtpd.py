"""The baseline for bench_pipeline: a bare aiosmtpd server with STARTTLS + AUTH that
accepts each message and throws it away. Same certificate, same library, no lab."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.engines.tls import LabTLS


class Discard:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 OK discarded"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"alice-pass"
    return AuthResult(success=ok, handled=False)


async def main(port: int, tls_dir: str) -> None:
    tls = LabTLS.load(Path(tls_dir))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Discard(),
            tls_context=tls.server_context,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator,
            hostname="bare",
        ),
        "127.0.0.1",
        port,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
