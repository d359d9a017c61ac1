"""E-mail polling and replies against small fake IMAP and SMTP servers on 127.0.0.1, serving the recorded messages."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import email
import email.policy
import ipaddress
import pathlib
import re
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from channels.adapters import mail
from channels.adapters.base import (
    Author,
    Direction,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    TransientError,
)
from channels.adapters.mail import EmailAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
MAILBOX_FILES = [  # served in this order, with UIDs 3, 6, 9, ...: UIDs are not sequence numbers
    "chatwoot/email_rfc822/references.eml",
    "chatwoot/email_rfc822/multiple_in_reply_to.eml",
    "django-mailbox/email_rfc822/generic_message.eml",
    "django-mailbox/email_rfc822/multipart_text.eml",
    "django-mailbox/email_rfc822/message_with_utf8_char.eml",
    "django-mailbox/email_rfc822/message_with_attachment.eml",
    "django-mailbox/email_rfc822/message_with_not_decoded_attachment_header.eml",
    "django-mailbox/email_rfc822/message_with_text_attachment.eml",
    "django-mailbox/email_rfc822/message_with_single_byte_extended_subject_encoding.eml",
    "django-mailbox/email_rfc822/email_issue_82.eml",
]


# -- a fake IMAP server ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Mailbox:
    uidvalidity: int
    messages: list[tuple[int, bytes]]


class FakeImap(socketserver.ThreadingTCPServer):
    """The few IMAP4rev1 commands imaplib sends: CAPABILITY, LOGIN, SELECT/EXAMINE, UID SEARCH, UID FETCH, LOGOUT."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mailboxes: dict[str, Mailbox], *, password: str = "imap-pass",
                 tls: ssl.SSLContext | None = None, starttls: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _ImapSession)
        self.tls = tls  # IMAP over TLS from the first byte (port 993 style) when set, or after STARTTLS
        self.starttls = starttls
        self.mailboxes = mailboxes
        self.password = password
        self.commands: list[str] = []
        self.login_answer = ""  # e.g. "NO [UNAVAILABLE] try later"
        self.drop_on = ""  # a command after which the server hangs up without answering

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that refuses our test certificate ends its session; nothing to report."""


class _ImapSession(socketserver.StreamRequestHandler):
    server: FakeImap

    def setup(self) -> None:
        if self.server.tls is not None and not self.server.starttls:
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def handle(self) -> None:
        self.selected: Mailbox | None = None
        self.send(b"* OK fake IMAP ready")
        while line := self.rfile.readline():
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                sub, _, args = args.partition(" ")
                command = f"UID {sub.upper()}"
            self.server.commands.append(f"{command} {args}".strip())
            if self.server.drop_on and command == self.server.drop_on:
                return
            if not self.answer(tag, command, args):
                return

    def send(self, data: bytes) -> None:
        self.wfile.write(data + b"\r\n")

    def answer(self, tag: str, command: str, args: str) -> bool:
        ok = f"{tag} OK {command} completed".encode()
        if command == "CAPABILITY":
            self.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN" + (b" STARTTLS" if self.server.starttls else b""))
        elif command == "STARTTLS" and self.server.starttls:
            self.send(ok)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            self.rfile, self.wfile = self.request.makefile("rb"), self.request.makefile("wb", buffering=0)
            return True
        elif command == "LOGIN":
            user, password = _atoms(args)
            if self.server.login_answer:
                self.send(f"{tag} {self.server.login_answer}".encode())
                return True
            if (user, password) != ("support@example.com", self.server.password):
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials".encode())
                return True
        elif command in ("SELECT", "EXAMINE"):
            [name] = _atoms(args)
            self.selected = self.server.mailboxes.get(name)
            if self.selected is None:
                self.send(f"{tag} NO [NONEXISTENT] Unknown mailbox".encode())
                return True
            uids = [uid for uid, _ in self.selected.messages]
            self.send(f"* {len(uids)} EXISTS".encode())
            self.send(f"* OK [UIDVALIDITY {self.selected.uidvalidity}] UIDs valid".encode())
            self.send(f"* OK [UIDNEXT {max(uids, default=0) + 1}] Predicted next UID".encode())
            ok = f"{tag} OK [READ-ONLY] {command} completed".encode()
        elif command == "UID SEARCH":
            self.send(b"* SEARCH" + b"".join(b" %d" % uid for uid in self.search(args)))
        elif command == "UID FETCH":
            uid_set, _, items = args.partition(" ")
            assert items == "(UID BODY.PEEK[])"
            wanted = {int(u) for u in uid_set.split(",")}
            for number, (uid, data) in enumerate(self.selected.messages, start=1):
                if uid in wanted:
                    self.wfile.write(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (number, uid, len(data)) + data + b")\r\n")
        elif command == "LOGOUT":
            self.send(b"* BYE logging out")
            self.send(ok)
            return False
        elif command != "NOOP":
            self.send(f"{tag} BAD unknown command".encode())
            return True
        self.send(ok)
        return True

    def search(self, args: str) -> list[int]:
        uids = [uid for uid, _ in self.selected.messages]
        found = re.fullmatch(r"UID (\d+):\*", args)
        if found:  # RFC 3501: "n:*" always includes the highest UID, even when it is below n
            low = int(found.group(1))
            return sorted({uid for uid in uids if uid >= low} | set(uids[-1:]))
        found = re.fullmatch(r'HEADER Message-ID "(.+)"', args, re.IGNORECASE)
        assert found, args
        return [uid for uid, data in self.selected.messages
                if found.group(1).encode() in email.message_from_bytes(data).get("Message-ID", "").encode()]


def _atoms(args: str) -> list[str]:
    return [quoted.replace('\\"', '"') if quoted else atom for quoted, atom in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)',
                                                                                          args)]


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[Any]:
    """The server answering on its own thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def recorded_mailboxes() -> dict[str, Mailbox]:
    messages = [(3 * (i + 1), (RECORDED / name).read_bytes()) for i, name in enumerate(MAILBOX_FILES)]
    return {"INBOX": Mailbox(uidvalidity=1700000001, messages=messages), "Sent": Mailbox(uidvalidity=7, messages=[])}


@pytest.fixture
def imap_server() -> Iterator[FakeImap]:
    with serving(FakeImap(recorded_mailboxes())) as server:
        yield server


def imap_adapter(server: FakeImap, **config: Any) -> EmailAdapter:
    return EmailAdapter(external_id="support@example.com",
                        credentials={"username": "support@example.com", "password": "imap-pass"},
                        config={"imap_host": "127.0.0.1", "imap_port": server.port, "imap_security": "none",
                                "timeout": 5, **config})


# -- IMAP polling ---------------------------------------------------------------------------------------

def test_first_poll_reads_the_mailbox_in_batches_without_marking_anything_read(imap_server: FakeImap) -> None:
    page = imap_adapter(imap_server, imap_batch=4).fetch({})

    assert [e.external_id for e in page.events[:3]] == [
        "0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com", "0CB459E0-0336-41DA-BC88-E6E28C697DDB@chatwoot.com",
        "CAMdmm+hGH8Dgn-_0xnXJCd=PhyNAiouOYm5zFP0z-foqTO60zA@mail.gmail.com",
    ]
    assert len(page.events) == 10
    assert page.events[0].raw["imap"] == {"mailbox": "INBOX", "uidvalidity": 1700000001, "uid": 3}
    assert page.events[0].thread_key == "4e6e35f5a38b4_479f13bb90078178@small-app-01.mail"
    assert page.events[-1].text.startswith("Atención")
    assert (page.cursor, page.has_more) == ({"uidvalidity": 1700000001, "last_uid": 30}, False)
    assert imap_server.commands == [
        "CAPABILITY", "LOGIN support@example.com \"imap-pass\"", 'EXAMINE "INBOX"', "UID SEARCH UID 1:*",
        "UID FETCH 3,6,9,12 (UID BODY.PEEK[])", "UID FETCH 15,18,21,24 (UID BODY.PEEK[])",
        "UID FETCH 27,30 (UID BODY.PEEK[])", "LOGOUT",
    ]


def test_next_poll_reads_only_new_messages(imap_server: FakeImap) -> None:
    adapter = imap_adapter(imap_server)
    first = adapter.fetch({})
    new = (RECORDED / "chatwoot/email_rfc822/references.eml").read_bytes().replace(
        b"Message-Id: <0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com>", b"Message-Id: <new@chatwoot.com>")
    imap_server.mailboxes["INBOX"].messages.append((31, new))

    second = adapter.fetch(first.cursor)
    third = adapter.fetch(second.cursor)

    assert [e.external_id for e in second.events] == ["new@chatwoot.com"]
    assert second.cursor == {"uidvalidity": 1700000001, "last_uid": 31}
    # "32:*" names the last message (UID 31) again; the adapter must not take it for a new one.
    assert (third.events, third.cursor) == ([], second.cursor)
    assert "UID SEARCH UID 32:*" in imap_server.commands


def test_poll_limit_leaves_the_rest_for_the_next_fetch(imap_server: FakeImap) -> None:
    adapter = imap_adapter(imap_server, imap_max_messages=4)

    first = adapter.fetch({})
    second = adapter.fetch(first.cursor)

    assert (len(first.events), first.cursor["last_uid"], first.has_more) == (4, 12, True)
    assert (len(second.events), second.cursor["last_uid"], second.has_more) == (4, 24, True)


def test_changed_uidvalidity_restarts_from_the_first_message_and_says_so(imap_server: FakeImap) -> None:
    adapter = imap_adapter(imap_server)

    page = adapter.fetch({"uidvalidity": 99, "last_uid": 30})

    assert len(page.events) == 10
    assert page.cursor == {"uidvalidity": 1700000001, "last_uid": 30}
    assert adapter.skipped == [("INBOX cursor", "UIDVALIDITY changed from 99 to 1700000001: reading the mailbox "
                                                "again from its first message")]


def test_unparseable_message_is_skipped_with_its_uid(imap_server: FakeImap) -> None:
    no_from = (RECORDED / "django-mailbox/email_rfc822/generic_message.eml").read_bytes().replace(
        b"From: Adam Coddington <test@adamcoddington.net>\n", b"")
    imap_server.mailboxes["INBOX"].messages.append((40, no_from))
    adapter = imap_adapter(imap_server)

    page = adapter.fetch({"uidvalidity": 1700000001, "last_uid": 30})

    assert (page.events, page.cursor["last_uid"]) == ([], 40)
    assert adapter.skipped == [("INBOX uid 40", "e-mail has no From header: the sender is unknown")]


def test_our_own_reply_seen_again_over_imap_has_the_id_send_gave_it(imap_server: FakeImap) -> None:
    adapter = imap_adapter(imap_server)
    reply, _, message_id = adapter.build_reply(REPLY)
    imap_server.mailboxes["INBOX"].messages.append((50, reply.as_bytes()))

    [echo] = adapter.fetch({"uidvalidity": 1700000001, "last_uid": 30}).events

    assert echo.external_id == message_id
    assert echo.direction == Direction.OUTBOUND
    assert (echo.thread_key, echo.reply_to_id) == (REPLY.thread_key, REPLY.reply_to_id)
    assert echo.text == REPLY.text


def test_imap_failures_are_mapped(imap_server: FakeImap) -> None:
    adapter = imap_adapter(imap_server)
    adapter.credentials["password"] = "wrong"
    with pytest.raises(PermanentError, match="login refused"):
        adapter.fetch({})
    imap_server.login_answer = "NO [UNAVAILABLE] Server busy"
    with pytest.raises(TransientError, match="temporarily unavailable"):
        imap_adapter(imap_server).fetch({})
    imap_server.login_answer = ""
    with pytest.raises(PermanentError, match="cannot be opened"):
        imap_adapter(imap_server, imap_mailbox="Archive").fetch({})
    imap_server.drop_on = "UID FETCH"
    with pytest.raises(TransientError, match="IMAP"):
        imap_adapter(imap_server).fetch({})
    with pytest.raises(PayloadError, match="last_uid"):
        imap_adapter(imap_server).fetch({"uidvalidity": 1700000001, "last_uid": "7"})


def test_unreachable_and_silent_imap_servers_are_transient() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(TransientError, match="cannot connect"):
        EmailAdapter(external_id="support@example.com", credentials={"username": "u", "password": "p"},
                     config={"imap_host": "127.0.0.1", "imap_port": port, "imap_security": "none"}).fetch({})
    with socket.socket() as silent:  # accepts the connection, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        adapter = EmailAdapter(external_id="support@example.com", credentials={"username": "u", "password": "p"},
                               config={"imap_host": "127.0.0.1", "imap_port": silent.getsockname()[1],
                                       "imap_security": "none", "timeout": 0.5})
        with pytest.raises(TransientError, match="cannot connect"):
            adapter.fetch({})


@pytest.mark.parametrize(("config", "credentials", "message"), [
    ({}, {"username": "u", "password": "p"}, "imap_host"),
    ({"imap_host": "mail.example.com", "imap_security": "none"}, {"username": "u", "password": "p"}, "loopback"),
    ({"imap_host": "mail.example.com", "imap_security": "tls"}, {"username": "u", "password": "p"}, "one of"),
    ({"imap_host": "mail.example.com", "imap_port": "993"}, {"username": "u", "password": "p"}, "port"),
    ({"imap_host": "mail.example.com", "timeout": 0}, {"username": "u", "password": "p"}, "timeout"),
    ({"imap_host": "mail.example.com"}, {"username": "u"}, "are required"),
])
def test_imap_configuration_is_checked_before_connecting(config: dict, credentials: dict, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        EmailAdapter(external_id="support@example.com", credentials=credentials, config=config).fetch({})


# -- a fake SMTP server ---------------------------------------------------------------------------------

class FakeSmtp(socketserver.ThreadingTCPServer):
    """Enough ESMTP for smtplib: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT; faults on request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.tls = tls  # offers STARTTLS when set
        self.received: list[dict[str, Any]] = []
        self.commands: list[str] = []
        self.rcpt_answer = b"250 2.1.5 OK"
        self.data_answer = b"250 2.0.0 queued as 4XyZ"
        self.hang_up_after_data = False

    @property
    def port(self) -> int:
        return self.server_address[1]


class _SmtpSession(socketserver.StreamRequestHandler):
    server: FakeSmtp

    def handle(self) -> None:
        envelope: dict[str, Any] = {"rcpt": []}
        self.send(b"220 fake ESMTP ready")
        while line := self.rfile.readline():
            text = line.decode().rstrip("\r\n")
            verb = text.split(" ", 1)[0].upper()
            self.server.commands.append(verb if verb != "AUTH" else "AUTH PLAIN")
            if verb == "EHLO":
                self.send(b"250-fake greets you\r\n250-AUTH PLAIN\r\n" + (b"250-STARTTLS\r\n" if self.server.tls
                                                                            else b"") + b"250 8BITMIME")
            elif verb == "STARTTLS" and self.server.tls is not None:
                self.send(b"220 2.0.0 ready to start TLS")
                self.request = self.server.tls.wrap_socket(self.request, server_side=True)
                self.rfile, self.wfile = self.request.makefile("rb"), self.request.makefile("wb", buffering=0)
            elif verb == "AUTH":
                _, user, password = base64.b64decode(text.split()[-1]).split(b"\0")
                self.send(b"235 2.7.0 OK" if (user, password) == (b"support@example.com", b"smtp-pass")
                          else b"535 5.7.8 Authentication credentials invalid")
            elif verb == "MAIL":
                envelope = {"from": text[10:].strip("<>"), "rcpt": []}
                self.send(b"250 2.1.0 OK")
            elif verb == "RCPT":
                envelope["rcpt"].append(text[8:].strip("<>"))
                self.send(self.server.rcpt_answer)
            elif verb == "DATA":
                self.send(b"354 go ahead")
                lines = []
                while (data := self.rfile.readline()) != b".\r\n":
                    lines.append(data[1:] if data.startswith(b"..") else data)
                if self.server.hang_up_after_data:
                    return
                if self.server.data_answer.startswith(b"2"):
                    self.server.received.append({**envelope, "data": b"".join(lines)})
                self.send(self.server.data_answer)
            elif verb == "QUIT":
                self.send(b"221 bye")
                return
            else:
                self.send(b"250 OK")

    def send(self, data: bytes) -> None:
        self.wfile.write(data + b"\r\n")


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    with serving(FakeSmtp()) as server:
        yield server


CUSTOMER = Author(platform="email", external_id="sony@chatwoot.com", handle="sony@chatwoot.com",
                  display_name="Sony Mathew")
REPLY = OutboundMessage(
    idempotency_key="reply-42", text="Hallo Sony,\nwir kümmern uns darum.\n.\nGrüße", recipient=CUSTOMER,
    thread_key="4e6e35f5a38b4_479f13bb90078178@small-app-01.mail",
    reply_to_id="0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com", private=True,
)


def smtp_adapter(server: FakeSmtp, **config: Any) -> EmailAdapter:
    return EmailAdapter(external_id="support@example.com",
                        credentials={"username": "support@example.com", "password": "imap-pass",
                                     "smtp_password": "smtp-pass"},
                        config={"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_security": "none",
                                "from_name": "Example Support", "timeout": 5, **config})


# -- SMTP replies ---------------------------------------------------------------------------------------

def test_reply_is_threaded_with_a_message_id_from_the_idempotency_key(smtp_server: FakeSmtp) -> None:
    adapter = smtp_adapter(smtp_server, reply_subject="Discussion: Let's debate these attachments")

    result = adapter.send(REPLY)

    [sent] = smtp_server.received
    assert (sent["from"], sent["rcpt"]) == ("support@example.com", ["sony@chatwoot.com"])
    assert smtp_server.commands == ["EHLO", "AUTH PLAIN", "MAIL", "RCPT", "DATA", "QUIT"]
    message = email.message_from_bytes(sent["data"], policy=email.policy.default)
    assert message["Message-ID"] == f"<{result.external_id}>"
    assert result.external_id == adapter.message_id("reply-42")
    assert re.fullmatch(r"crm\.[0-9a-f]{40}@example\.com", result.external_id)
    assert message["In-Reply-To"] == "<0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com>"
    assert message["References"] == ("<4e6e35f5a38b4_479f13bb90078178@small-app-01.mail> "
                                     "<0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com>")
    assert message["Subject"] == "Re: Discussion: Let's debate these attachments"
    assert (str(message["From"]), str(message["To"])) == ("Example Support <support@example.com>",
                                                          "Sony Mathew <sony@chatwoot.com>")
    # The lone dot line survives SMTP's dot-stuffing.
    assert message.get_content().replace("\r\n", "\n") == "Hallo Sony,\nwir kümmern uns darum.\n.\nGrüße\n"
    assert result.thread_key == REPLY.thread_key
    assert result.raw["smtp_reply"] == "250 2.0.0 queued as 4XyZ"
    # The customer's answer to it: References start at the same root, so it lands in the same conversation.
    [echo] = EmailAdapter(external_id="support@example.com").parse(sent["data"])
    assert (echo.external_id, echo.direction, echo.thread_key) == (result.external_id, Direction.OUTBOUND,
                                                                   REPLY.thread_key)


def test_same_idempotency_key_same_message_id_and_subject_from_a_subject_thread(smtp_server: FakeSmtp) -> None:
    adapter = smtp_adapter(smtp_server)
    subject_thread = dataclasses.replace(REPLY, thread_key="subject:stuff|user2@yahoo.com",
                                         reply_to_id="388586.81550.bm@smtp120-mob.biz.mail.ne1.yahoo.com")

    first, again = adapter.send(subject_thread), adapter.send(subject_thread)

    assert first.external_id == again.external_id
    message = email.message_from_bytes(smtp_server.received[0]["data"], policy=email.policy.default)
    assert message["Subject"] == "Re: stuff"
    assert message["References"] == "<388586.81550.bm@smtp120-mob.biz.mail.ne1.yahoo.com>"  # no subject key in it
    assert adapter.message_id("reply-43") != first.external_id


def test_smtp_refusals_before_the_data_are_retryable_or_final(smtp_server: FakeSmtp) -> None:
    smtp_server.rcpt_answer = b"450 4.2.1 mailbox busy"
    with pytest.raises(TransientError, match="RCPT TO refused for now: 450") as busy:
        smtp_adapter(smtp_server).send(REPLY)
    assert not isinstance(busy.value, OutcomeUnknown)
    smtp_server.rcpt_answer = b"550 5.1.1 no such user"
    with pytest.raises(PermanentError, match="RCPT TO refused: 550"):
        smtp_adapter(smtp_server).send(REPLY)
    smtp_server.rcpt_answer = b"250 OK"
    smtp_server.data_answer = b"554 5.7.1 rejected as spam"
    with pytest.raises(PermanentError, match="end of DATA refused: 554"):
        smtp_adapter(smtp_server).send(REPLY)
    with pytest.raises(PermanentError, match="login refused"):
        EmailAdapter(external_id="support@example.com", credentials={"username": "support@example.com",
                                                                      "password": "wrong"},
                     config={"smtp_host": "127.0.0.1", "smtp_port": smtp_server.port,
                             "smtp_security": "none"}).send(REPLY)
    assert smtp_server.received == []


def test_connection_lost_after_the_data_is_outcome_unknown(smtp_server: FakeSmtp) -> None:
    smtp_server.hang_up_after_data = True
    adapter = smtp_adapter(smtp_server)

    with pytest.raises(OutcomeUnknown, match="connection lost while sending"):
        adapter.send(REPLY)
    with pytest.raises(OutcomeUnknown, match="no sent_mailbox"):
        adapter.find_sent(REPLY)


def test_unreachable_smtp_server_is_transient() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    adapter = EmailAdapter(external_id="support@example.com", credentials={"username": "u", "password": "p"},
                           config={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"})

    with pytest.raises(TransientError, match="cannot connect to SMTP") as caught:
        adapter.send(REPLY)
    assert not isinstance(caught.value, OutcomeUnknown)


def test_replies_refused_before_connecting() -> None:
    adapter = EmailAdapter(external_id="support@example.com", config={"smtp_host": "127.0.0.1"})

    with pytest.raises(PermanentError, match="no recipient address"):
        adapter.send(dataclasses.replace(REPLY, recipient=None))
    with pytest.raises(PermanentError, match="empty"):
        adapter.send(dataclasses.replace(REPLY, text=" \n"))
    with pytest.raises(PermanentError, match="idempotency key"):
        adapter.send(dataclasses.replace(REPLY, idempotency_key=""))
    with pytest.raises(PermanentError, match="mailbox address"):
        EmailAdapter(config={"smtp_host": "127.0.0.1"}).send(REPLY)
    with pytest.raises(PermanentError, match="loopback"):
        EmailAdapter(external_id="support@example.com", config={"smtp_host": "smtp.example.com",
                                                                "smtp_security": "none"}).send(REPLY)


def test_header_injection_through_names_and_ids_is_neutralised() -> None:
    hostile = dataclasses.replace(
        REPLY, recipient=dataclasses.replace(CUSTOMER, display_name="Sony\r\nBcc: victim@example.org"),
        reply_to_id="a@b>\r\nBcc: <victim@example.org", thread_key="subject:x\r\nBcc: y|sony@chatwoot.com")

    reply, to_address, _ = EmailAdapter(external_id="support@example.com").build_reply(hostile)

    data = reply.as_bytes()
    assert b"\r\nBcc:" not in data
    assert "In-Reply-To" not in reply
    assert to_address == "sony@chatwoot.com"


def test_find_sent_finds_the_reply_in_the_sent_mailbox(imap_server: FakeImap, smtp_server: FakeSmtp) -> None:
    adapter = EmailAdapter(external_id="support@example.com",
                           credentials={"username": "support@example.com", "password": "imap-pass",
                                        "smtp_password": "smtp-pass"},
                           config={"imap_host": "127.0.0.1", "imap_port": imap_server.port, "imap_security": "none",
                                   "smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "smtp_security": "none",
                                   "sent_mailbox": "Sent"})
    with pytest.raises(OutcomeUnknown, match="not in 'Sent'"):
        adapter.find_sent(REPLY)
    sent = adapter.send(REPLY)
    imap_server.mailboxes["Sent"].messages.append((1, smtp_server.received[0]["data"]))

    found = adapter.find_sent(REPLY)

    assert found is not None
    assert (found.external_id, found.raw["found_in"], found.raw["uid"]) == (sent.external_id, "Sent", 1)
    assert f'UID SEARCH HEADER Message-ID "<{sent.external_id}>"' in imap_server.commands


def test_send_time_is_the_adapter_clock(smtp_server: FakeSmtp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail, "utc_now", lambda: dt.datetime(2026, 8, 1, 12, 0, tzinfo=dt.UTC))

    smtp_adapter(smtp_server).send(REPLY)

    message = email.message_from_bytes(smtp_server.received[0]["data"], policy=email.policy.default)
    assert message["Date"].datetime == dt.datetime(2026, 8, 1, 12, 0, tzinfo=dt.UTC)


# -- TLS: IMAP over TLS and SMTP STARTTLS with a certificate made for the test ---------------------------

@dataclasses.dataclass(frozen=True)
class MadeCertificate:
    server: ssl.SSLContext
    pem: str


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> MadeCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "socialcrm test mail server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return MadeCertificate(server=server, pem=pem.decode())


class TrustingMadeCertificate(EmailAdapter):
    """The adapter with the test certificate as its only trusted one (production uses the system's)."""

    pem = ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.pem)


def tls_adapter(certificate: MadeCertificate, trusted: bool = True, **config: Any) -> EmailAdapter:
    adapter_class = type("Trusting", (TrustingMadeCertificate,), {"pem": certificate.pem}) if trusted else EmailAdapter
    return adapter_class(external_id="support@example.com",
                         credentials={"username": "support@example.com", "password": "imap-pass",
                                      "smtp_password": "smtp-pass"},
                         config={"timeout": 5, **config})


def test_imap_over_tls(certificate: MadeCertificate) -> None:
    with serving(FakeImap(recorded_mailboxes(), tls=certificate.server)) as server:
        config = {"imap_host": "127.0.0.1", "imap_port": server.port, "imap_security": "ssl"}

        page = tls_adapter(certificate, **config).fetch({})

        assert len(page.events) == 10
        with pytest.raises(PermanentError, match="untrusted certificate"):
            tls_adapter(certificate, trusted=False, **config).fetch({})


def test_imap_starttls(certificate: MadeCertificate) -> None:
    with serving(FakeImap(recorded_mailboxes(), tls=certificate.server, starttls=True)) as server:
        config = {"imap_host": "127.0.0.1", "imap_port": server.port, "imap_security": "starttls"}

        page = tls_adapter(certificate, **config).fetch({})

        assert len(page.events) == 10
        assert server.commands[:4] == ["CAPABILITY", "STARTTLS", "CAPABILITY",
                                       'LOGIN support@example.com "imap-pass"']


def test_smtp_starttls(certificate: MadeCertificate) -> None:
    with serving(FakeSmtp(tls=certificate.server)) as server:
        config = {"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_security": "starttls"}

        result = tls_adapter(certificate, **config).send(REPLY)

        assert server.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH PLAIN", "MAIL", "RCPT", "DATA", "QUIT"]
        assert result.external_id in server.received[0]["data"].decode()
        with pytest.raises(PermanentError, match="untrusted certificate"):
            tls_adapter(certificate, trusted=False, **config).send(REPLY)
        assert len(server.received) == 1


def test_servers_without_starttls_are_refused(imap_server: FakeImap, smtp_server: FakeSmtp) -> None:
    with pytest.raises(PermanentError, match="does not offer"):
        smtp_adapter(smtp_server, smtp_security="starttls").send(REPLY)
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        imap_adapter(imap_server, imap_security="starttls").fetch({})
    assert smtp_server.received == []
    assert "LOGIN" not in " ".join(imap_server.commands)  # the password never went out in the clear
