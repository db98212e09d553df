"""pytest plugin: run kazoo's own test suite against an external ensemble.

kazoo's harness (kazoo/testing/harness.py) gets its servers from
``get_global_cluster()``, which builds a ``ZookeeperCluster``
(kazoo/testing/common.py) that starts its own Java ZooKeeper processes from
ZOOKEEPER_PATH / ZOOKEEPER_CLASSPATH / ZOOKEEPER_VERSION. Every test reaches
the cluster only through ``KazooTestHarness.cluster`` (a property calling the
module-level ``get_global_cluster``): ``.servers`` joins ``s.address`` of the
cluster's members, ``setup_zookeeper`` calls ``cluster.start()`` when a member
is not ``running``, ``KazooTestCase.tearDownClass`` calls
``cluster.terminate()``, a few tests index ``cluster[i]`` and call
``.stop()`` / ``.run()`` on a member, the TLS test calls
``cluster.get_ssl_client_configuration()``, and kazoo's conftest calls
``cluster.get_logs()`` when a test fails.

This plugin replaces ``kazoo.testing.harness.get_global_cluster`` with one that
returns an ``ExternalCluster`` built from ``--servers host:port,...`` (or
KAZOO_SERVERS). Its members are always ``running``; ``start``/``terminate``
are no-ops (nothing to start, and the ensemble outlives the run); stopping,
restarting or resetting one member, and TLS, raise a skip, so a test of that
kind that is missing from excluded.txt shows up as a skip naming the reason
instead of touching servers it does not own. Environment variables that make
kazoo's harness reconfigure its own cluster (ZOOKEEPER_JAAS_AUTH,
ZOOKEEPER_LOCAL_SESSION_RO) have no effect here.

``--excluded FILE`` deselects the tests named in FILE (one pytest node id
relative to the kazoo package, ``kazoo/tests/test_x.py::Class::test``, per
line; ``#`` starts a comment). A name that matches no collected test is an
error, so the list cannot silently drift from the pinned kazoo version.
"""

import logging
import os

import pytest

SKIP_PREFIX = "external ensemble: "


class ExternalServer(object):
    """One member of an ensemble this run does not own."""

    def __init__(self, host, port):
        self.host = host
        self.client_port = port
        self.running = True

    @property
    def address(self):
        return "%s:%s" % (self.host, self.client_port)

    @property
    def secure_address(self):
        pytest.skip(SKIP_PREFIX + "no TLS client port")

    @property
    def secure_client_port(self):
        pytest.skip(SKIP_PREFIX + "no TLS client port")

    def run(self):
        pytest.skip(SKIP_PREFIX + "cannot restart a server")

    def stop(self):
        pytest.skip(SKIP_PREFIX + "cannot stop a server")

    def reset(self):
        pytest.skip(SKIP_PREFIX + "cannot reset a server")

    def destroy(self):
        pytest.skip(SKIP_PREFIX + "cannot destroy a server")

    def get_logs(self, num_lines=100):
        return []


class ExternalCluster(object):
    def __init__(self, servers):
        self._servers = servers

    def __getitem__(self, k):
        return self._servers[k]

    def __iter__(self):
        return iter(self._servers)

    def __len__(self):
        return len(self._servers)

    def start(self):
        pass

    def terminate(self):
        pass

    def stop(self):
        pytest.skip(SKIP_PREFIX + "cannot stop the ensemble")

    def reset(self):
        pytest.skip(SKIP_PREFIX + "cannot reset the ensemble")

    def get_logs(self):
        return []

    def get_ssl_client_configuration(self):
        pytest.skip(SKIP_PREFIX + "no TLS client port")


def parse_servers(spec):
    servers = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [v6addr]:port
            host, _, port = item[1:].partition("]:")
        else:
            host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise pytest.UsageError("bad server %r in --servers" % item)
        servers.append(ExternalServer(host, int(port)))
    if not servers:
        raise pytest.UsageError("--servers is empty")
    return servers


def pytest_addoption(parser):
    group = parser.getgroup("kazoo-external")
    group.addoption(
        "--servers",
        default=os.environ.get("KAZOO_SERVERS"),
        help="host:port,... of the external ensemble (default: $KAZOO_SERVERS)",
    )
    group.addoption(
        "--excluded",
        default=None,
        help="file of kazoo test node ids to deselect",
    )


def pytest_configure(config):
    spec = config.getoption("--servers")
    if not spec:
        raise pytest.UsageError("give --servers host:port,... or KAZOO_SERVERS")
    cluster = ExternalCluster(parse_servers(spec))

    from kazoo.testing import harness

    harness.CLUSTER = cluster
    # Clients that tests leave running log their reconnects at WARNING after
    # pytest has removed its capture handlers; keep that off the terminal.
    logging.getLogger("kazoo").addHandler(logging.NullHandler())
    harness.get_global_cluster = lambda: cluster
    config._kazoo_external_cluster = cluster


def pytest_report_header(config):
    cluster = getattr(config, "_kazoo_external_cluster", None)
    if cluster is not None:
        import kazoo.version

        return "kazoo %s against external ensemble %s" % (
            kazoo.version.__version__,
            ",".join(s.address for s in cluster),
        )


def read_excluded(path):
    names = []
    with open(path) as f:
        for line in f:
            name = line.split("#", 1)[0].strip()
            if name:
                names.append(name)
    return names


def kazoo_relative_id(item, root):
    """`kazoo/tests/test_x.py::Class::test` for an item of kazoo's tests.

    Built from the item's file path (pytest's own node ids for files outside
    the rootdir depend on the pytest version and the invocation).
    """
    path = os.path.relpath(str(item.path), root).replace(os.sep, "/")
    _, sep, rest = item.nodeid.partition("::")
    return path + sep + rest


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: see every test
def pytest_collection_modifyitems(session, config, items):
    path = config.getoption("--excluded")
    if not path:
        return
    excluded = read_excluded(path)
    wanted = set(excluded)
    import kazoo

    root = os.path.dirname(os.path.dirname(os.path.abspath(kazoo.__file__)))
    kept, dropped, seen, files = [], [], set(), set()
    for item in items:
        rid = kazoo_relative_id(item, root)
        files.add(rid.partition("::")[0])
        if rid in wanted:
            dropped.append(item)
            seen.add(rid)
        else:
            kept.append(item)
    # Only names in files that were collected can be checked (a run may
    # select a single file).
    unknown = [
        n
        for n in excluded
        if n not in seen
        and (
            n.partition("::")[0] in files
            or not os.path.isfile(os.path.join(root, n.partition("::")[0]))
        )
    ]
    if unknown:
        raise pytest.UsageError(
            "%s names tests that were not collected: %s" % (path, ", ".join(unknown))
        )
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
