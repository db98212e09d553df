"""kazoo over TLS against Synod's ZooKeeper secure ports (synod dev --tls).

Usage: check.py TLS_DIR HOSTS
TLS_DIR holds synod dev's throwaway ca.crt, client.crt and client.key;
HOSTS lists the secure ports. Checks, with kazoo's own TLS options
(use_ssl, ca, certfile, keyfile, check_hostname): sessions, data, a watch
and an ephemeral node across members; an x509 ACL that admits the client
certificate's subject and refuses a TLS client without a certificate; and
that a plaintext kazoo client cannot open a session on a secure port.
Prints one line per check; exits non-zero on the first failure.
"""

import logging
import os
import sys
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl
from kazoo.handlers.threading import KazooTimeoutError

# kazoo logs every failed attempt of the plaintext client, which is meant
# to fail.
logging.basicConfig(level=logging.CRITICAL)

tls_dir, hosts = sys.argv[1], sys.argv[2]
ca = os.path.join(tls_dir, "ca.crt")
cert = os.path.join(tls_dir, "client.crt")
key = os.path.join(tls_dir, "client.key")
# synod dev's client certificate (synod_tls::generate::DevCa::write).
SUBJECT = "CN=synod dev client"


def secure(host_list, with_cert=True):
    options = dict(use_ssl=True, ca=ca, verify_certs=True, check_hostname=True)
    if with_cert:
        options.update(certfile=cert, keyfile=key)
    return KazooClient(hosts=host_list, timeout=10, **options)


first, *rest = hosts.split(",")
owner = secure(first)
owner.start(timeout=20)
print("session over TLS:", hex(owner.client_id[0]))

owner.ensure_path("/tls")
owner.create("/tls/ephemeral", b"mine", ephemeral=True)
changed = threading.Event()
seen = []


def watcher(event):
    seen.append(event)
    changed.set()


# Another member, another TLS connection: the watch and the data cross the
# ensemble.
other = secure(",".join(rest) or first)
other.start(timeout=20)
other.sync("/tls/ephemeral")
data, stat = other.get("/tls/ephemeral", watch=watcher)
assert data == b"mine" and stat.ephemeralOwner == owner.client_id[0], (data, stat)
owner.set("/tls/ephemeral", b"changed")
assert changed.wait(10), "no watch event over TLS"
assert seen[0].type == "CHANGED" and seen[0].path == "/tls/ephemeral", seen
print("data, ephemeral and watch across members over TLS: ok")

# An x509 ACL names the client certificate's subject.
acl = make_acl("x509", SUBJECT, all=True)
owner.create("/tls/x509", b"only the certificate", acl=[acl])
assert owner.get("/tls/x509")[0] == b"only the certificate"
assert owner.get_acls("/tls/x509")[0][0].id.id == SUBJECT
anonymous = secure(first, with_cert=False)
anonymous.start(timeout=20)
anonymous.sync("/tls/x509")
try:
    anonymous.get("/tls/x509")
    raise AssertionError("a TLS client without a certificate read an x509-protected node")
except NoAuthError:
    pass
anonymous.stop()
anonymous.close()
print("x509 ACL admits", SUBJECT, "and refuses a client without a certificate: ok")

# A plaintext client on a secure port gets no session.
plain = KazooClient(hosts=first, timeout=3)
try:
    plain.start(timeout=5)
    raise AssertionError("a plaintext client opened a session on a secure port")
except KazooTimeoutError:
    pass
finally:
    plain.stop()
    plain.close()
print("plaintext client refused by the secure port: ok")

other.stop()
other.close()
owner.delete("/tls", recursive=True)
owner.stop()
owner.close()
print("kazoo over TLS: ok")
