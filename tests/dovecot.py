"""A real IMAP server for tests: Dovecot (Debian's ``dovecot-imapd``) as a child process.

It runs in the foreground (``dovecot -F``) on ephemeral loopback ports with a config
and Maildirs in a temporary directory, and is stopped at the end. Plain
IMAP and IMAPS (a self-signed certificate for 127.0.0.1 made with ``openssl``) are both
served. Run as root (CI), Dovecot's own ``dovecot``/``dovenull`` users run the
processes and own the mail; run as anyone else, that user does.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import imaplib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists()
                                      else None)
INSTALL_HINT = "the IMAP tests need Dovecot: apt-get install -y dovecot-imapd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dovecot:
    """One Dovecot instance; ``new_mailbox`` gives each test a mailbox of its own."""

    def __init__(self) -> None:
        if DOVECOT is None:
            raise RuntimeError(INSTALL_HINT)
        # short path: Dovecot's unix sockets live under it (108-byte limit)
        self.dir = Path(tempfile.mkdtemp(prefix="lh-dovecot-"))
        self.dir.chmod(0o755)  # the mail user (dovecot when we are root) must reach it
        self.port = _free_port()
        self.ssl_port = _free_port()
        self.password = secrets.token_hex(8)
        self.cert = self.dir / "cert.pem"
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            self.internal, self.login_user = "dovecot", "dovenull"
            self.mail_user = pwd.getpwnam("dovecot")
        else:
            self.internal = self.login_user = getpass.getuser()
            self.mail_user = pwd.getpwuid(os.getuid())
        self.group = grp.getgrgid(self.mail_user.pw_gid).gr_name

    def start(self) -> Dovecot:
        (self.dir / "run").mkdir()
        (self.dir / "state").mkdir()
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, self.mail_user.pw_uid, self.mail_user.pw_gid)
        key = self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(self.cert)],
            check=True, capture_output=True,
        )
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""\
base_dir = {self.dir}/run
state_dir = {self.dir}/state
instance_name = leadhub-test-{self.port}
protocols = imap
listen = 127.0.0.1
default_internal_user = {self.internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(self.internal).pw_gid).gr_name}
default_login_user = {self.login_user}
first_valid_uid = 1
log_path = {self.dir}/dovecot.log
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={self.mail_user.pw_uid} gid={self.mail_user.pw_gid} home={self.dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.ssl_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
""")
        assert DOVECOT is not None
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                self.stop()
                raise RuntimeError(f"dovecot did not start: {out}{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def new_mailbox(self) -> tuple[str, str]:
        """(username, password) of an empty mailbox: every name is a user of its own, all
        with the server's one password (a static passdb), so tests never share mail."""
        return f"leads-{secrets.token_hex(4)}@school.example.ru", self.password

    def client(self, user: str, password: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, password)
        return conn

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)
