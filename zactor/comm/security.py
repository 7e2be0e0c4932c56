"""The cluster's credentials and how every TCP socket uses them (DESIGN promise 5).

A multi-machine cluster has one credential: two CURVE key pairs, the *server* pair that every
listening socket (the head's, each node's transfer socket) presents, and the *client* pair
that every connecting socket presents. Whoever holds the credential is a member of the
cluster, can run code on it and read its objects; whoever does not gets nothing — CURVE
refuses the handshake before a single message is read, and the ZAP handler refuses any
client key but the cluster's. Both pairs travel together, so any member can also listen
(a worker node serves its objects to the others).

The credential is one line of text, ``zactor-key-v1 <server public> <server secret>
<client public> <client secret>`` (Z85, ZeroMQ's own key text), kept in a mode-0600 file
(``cluster.key`` in the head's state directory) or in ``ZACTOR_CLUSTER_KEY``. The key pairs
come from libzmq (``zmq.curve_keypair``) and the ZAP handler from pyzmq's ``zmq.auth``: no
cryptography of our own.

Sockets on ``ipc://`` paths need none of this: they live in a mode-0700 directory, so only
this user can connect, and encrypting a local pipe would only cost time.
"""

from __future__ import annotations

import logging
import os

import zmq

log = logging.getLogger(__name__)

KEY_FILE = "cluster.key"
KEY_ENV = "ZACTOR_CLUSTER_KEY"
KEY_FILE_ENV = "ZACTOR_CLUSTER_KEY_FILE"
_TAG = "zactor-key-v1"


class CredentialsError(ValueError):
    """The cluster's credential is missing or unreadable."""


class Credentials:
    """The cluster's two CURVE key pairs (Z85 text, as libzmq takes them). A plain class: a
    dataclass would import ``inspect`` into every process."""

    __slots__ = ("server_public", "server_secret", "client_public", "client_secret")

    def __init__(self, server_public: bytes, server_secret: bytes, client_public: bytes,
                 client_secret: bytes) -> None:
        self.server_public = server_public
        self.server_secret = server_secret
        self.client_public = client_public
        self.client_secret = client_secret

    def __repr__(self) -> str:
        return "Credentials(<secret>)"

    @classmethod
    def generate(cls) -> Credentials:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public, server_secret, client_public, client_secret)

    def text(self) -> str:
        keys = (self.server_public, self.server_secret, self.client_public, self.client_secret)
        return " ".join((_TAG, *(k.decode() for k in keys)))

    @classmethod
    def parse(cls, text: str, source: str) -> Credentials:
        words = [w for line in text.splitlines() if not line.lstrip().startswith("#")
                 for w in line.split()]
        if len(words) != 5 or words[0] != _TAG or any(len(w) != 40 for w in words[1:]):
            raise CredentialsError(f"{source} does not hold a zactor cluster key (expected "
                                   f"'{_TAG}' and four 40-character Z85 keys)")
        return cls(*(w.encode() for w in words[1:]))

    # -- sockets -----------------------------------------------------------------------------

    def make_server(self, sock: zmq.Socket) -> None:
        """Before bind: only peers presenting this cluster's keys complete a handshake."""
        sock.curve_server = True
        sock.curve_secretkey = self.server_secret
        sock.curve_publickey = self.server_public

    def make_client(self, sock: zmq.Socket) -> None:
        """Before connect: encrypt to, and authenticate with, this cluster's servers."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.client_public
        sock.curve_secretkey = self.client_secret


#: Stands for "no credentials, on purpose": a cluster started with ``--insecure``.
INSECURE = Credentials(b"", b"", b"", b"")
INSECURE_TEXT = "insecure"


def to_text(creds: Credentials | None) -> str | None:
    """``creds`` as the text a child process is handed (None stays None)."""
    if creds is None:
        return None
    return INSECURE_TEXT if creds is INSECURE else creds.text()


def from_text(text: str | None) -> Credentials | None:
    if not text:
        return None
    return INSECURE if text == INSECURE_TEXT else Credentials.parse(text, "the key given")


#: What :func:`http_token` signs: a token for HTTP only, never the key itself.
_HTTP_LABEL = b"zactor-http-token-v1"


def http_token(creds: Credentials) -> str:
    """The bearer token of the cluster's HTTP endpoints (node metrics ports, the dashboard):
    HMAC-SHA256 of a fixed label keyed by the cluster's client secret, as hex. Whoever holds
    the cluster key can compute it; it reveals nothing of the key. ``--insecure`` clusters
    have no credentials, hence no token (ValueError).

    Example::

        token = http_token(read_key_file(path))
        httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    """
    import hashlib
    import hmac

    if creds is None or creds is INSECURE or not creds.client_secret:
        raise ValueError("an insecure cluster has no credentials, hence no HTTP token")
    return hmac.new(creds.client_secret, _HTTP_LABEL, hashlib.sha256).hexdigest()


def carries_token(authorization: str, token: str) -> bool:
    """Whether an HTTP ``Authorization`` header carries ``token``: ``Bearer <token>``, or
    basic auth with any user name and the token as the password (what Prometheus's
    ``basic_auth`` and browsers send). Compared in constant time."""
    import base64
    import hmac

    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = value.strip()
    elif scheme == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def write_key_file(path: str, creds: Credentials) -> None:
    """Write ``creds`` to ``path``, readable by this user only (the file never exists with
    wider permissions, even for a moment)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# zactor cluster key: whoever holds it can run code on the cluster and read\n"
                "# its objects. Hand it to nodes and drivers privately; keep it mode 0600.\n")
        f.write(creds.text() + "\n")
    os.replace(tmp, path)


def read_key_file(path: str) -> Credentials:
    try:
        st = os.stat(path)
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise CredentialsError(f"cannot read the cluster key {path}: {exc}") from None
    if st.st_mode & 0o077:
        log.warning("the cluster key %s is readable by other users (mode %o): chmod 600 it",
                    path, st.st_mode & 0o777)
    return Credentials.parse(text, path)


def load_or_create(state_dir: str) -> tuple[Credentials, str]:
    """The head's credential in ``state_dir`` (made on first start); and its path."""
    path = os.path.join(state_dir, KEY_FILE)
    if not os.path.exists(path):
        write_key_file(path, Credentials.generate())
    return read_key_file(path), path


def from_environment(fallback_file: str | None = None) -> Credentials | None:
    """The credential a node or driver was given: ``ZACTOR_CLUSTER_KEY`` (the key's text),
    ``ZACTOR_CLUSTER_KEY_FILE`` (its path), else ``fallback_file`` if it exists."""
    text = os.environ.get(KEY_ENV)
    if text:
        return INSECURE if text == INSECURE_TEXT else Credentials.parse(text, KEY_ENV)
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        return read_key_file(path)
    if fallback_file and os.path.exists(fallback_file):
        return read_key_file(fallback_file)
    return None


class Authenticator:
    """The ZAP handler of a listening context: admits exactly the cluster's client key.

    pyzmq's ThreadAuthenticator answers ZAP requests on a thread of its own, so the event
    loop never waits on a handshake. Refusals are counted from the listening socket's monitor
    (see :class:`RefusalMonitor`), which also sees the handshakes that fail before ZAP is
    asked (no keys, or the wrong server key).
    """

    def __init__(self, ctx: zmq.Context, creds: Credentials) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._allowed = creds.client_public
        self._auth = ThreadAuthenticator(ctx, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:  # noqa: ARG002 - pyzmq's signature
        return key == self._allowed

    def stop(self) -> None:
        self._auth.stop()


_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (no or wrong keys, or not zactor)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "client key refused",
}


class RefusalMonitor:
    """Counts and logs the connections a listening socket refused."""

    def __init__(self, sock: zmq.Socket) -> None:
        mask = 0
        for event in _FAILED:
            mask |= event
        self.socket = sock.get_monitor_socket(mask)
        self.refused = 0

    def on_ready(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while self.socket.poll(0):
            try:
                msg = recv_monitor_message(self.socket, zmq.NOBLOCK)
            except zmq.Again:
                return
            why = _FAILED.get(msg["event"])
            if why is not None:
                self.refused += 1
                log.warning("refused a connection on %s: %s", msg["endpoint"].decode(
                    errors="replace"), why)

    def close(self) -> None:
        self.socket.close(linger=0)
