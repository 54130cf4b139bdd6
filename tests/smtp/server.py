"""A real SMTP server for the tests (aiosmtpd), on loopback.

Prints `READY <port>` once it listens, then appends one JSON line per accepted message to
--out: {"mail_from", "rcpt_tos", "data"}. Faults for the tests:
  --tempfail ADDR     the first DATA of a message to ADDR answers 451 (later ones are accepted)
  --reject ADDR       RCPT TO:<ADDR> answers 550
  --delay SECS        each DATA waits this long before answering
Security: --tls CERT KEY with --mode starttls (STARTTLS offered and required) or --mode tls
(implicit TLS); --auth USER:PASS requires AUTH (PLAIN/LOGIN).
"""

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--mode", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--auth")
    p.add_argument("--tempfail", action="append", default=[])
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()

    tempfailed = set()

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address in a.reject:
                return "550 5.1.1 No such user here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            if a.delay:
                await asyncio.sleep(a.delay)
            for r in envelope.rcpt_tos:
                if r in a.tempfail and r not in tempfailed:
                    tempfailed.add(r)
                    return "451 4.3.0 Try again later"
            with open(a.out, "a", encoding="utf-8") as f:
                f.write(
                    json.dumps(
                        {
                            "mail_from": envelope.mail_from,
                            "rcpt_tos": envelope.rcpt_tos,
                            "data": envelope.content.decode("utf-8", "replace"),
                            "auth": session.authenticated,
                            "tls": session.ssl is not None,
                            # One per connection: the tests count connections by it.
                            "session": id(session),
                        }
                    )
                    + "\n"
                )
                f.flush()
            return "250 2.0.0 Message accepted"

    def authenticator(server, session, envelope, mechanism, auth_data):
        user, password = a.auth.split(":", 1)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])

    kwargs = {}
    if a.mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    elif a.mode == "tls":
        kwargs.update(ssl_context=ctx)
    if a.auth:
        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=a.mode != "none",
        )
    # A free port (the controller's readiness check cannot use port 0).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
