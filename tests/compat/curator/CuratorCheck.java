// Apache Curator 5 recipes against a ZooKeeper ensemble (here: Synod), with
// the Curator and ZooKeeper client jars Debian ships, unchanged.
//
//   java CuratorCheck HOST:PORT,HOST:PORT,HOST:PORT
//
// Prints one line per check (PASS/FAIL name (ms): detail) and exits 1 when
// any check failed, 3 when the whole run overstayed its deadline. Every
// wait is bounded; every check asserts what the server did, through what
// a client can observe (data, stats, owners, events, 4lw counters).

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.api.transaction.OperationType;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.nodes.PersistentTtlNode;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class CuratorCheck {
    static final int SESSION_TIMEOUT_MS = 10_000;
    static final long RUN_DEADLINE_MS = 100_000;

    static String hosts;
    static List<String> members;
    static int passed = 0;
    static final List<String> failed = new ArrayList<>();

    interface Check {
        String run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        hosts = args[0];
        members = Arrays.asList(hosts.split(","));
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(RUN_DEADLINE_MS);
                System.out.println("FAIL deadline: the run took over " + RUN_DEADLINE_MS + " ms");
                System.out.flush();
                Runtime.getRuntime().halt(3);
            } catch (InterruptedException ignored) {
            }
        });
        watchdog.setDaemon(true);
        watchdog.start();

        check("connect", CuratorCheck::connect);
        check("create-containers", CuratorCheck::createContainers);
        check("create2-stat", CuratorCheck::create2Stat);
        check("set-get-versions", CuratorCheck::setGetVersions);
        check("inter-process-mutex", CuratorCheck::interProcessMutex);
        check("leader-latch", CuratorCheck::leaderLatch);
        check("curator-cache", CuratorCheck::curatorCache);
        check("persistent-node", CuratorCheck::persistentNode);
        check("persistent-ttl-node", CuratorCheck::persistentTtlNode);
        check("distributed-atomic-long", CuratorCheck::distributedAtomicLong);
        check("shared-count", CuratorCheck::sharedCount);
        check("transaction", CuratorCheck::transaction);
        check("transaction-failing", CuratorCheck::transactionFailing);
        check("watch-remove-one", CuratorCheck::watchRemoveOne);
        check("watch-remove-all-persistent", CuratorCheck::watchRemoveAllPersistent);
        check("session-reattached-elsewhere", CuratorCheck::sessionReattachedElsewhere);

        System.out.println("SUMMARY " + passed + " passed, " + failed.size() + " failed"
                + (failed.isEmpty() ? "" : ": " + String.join(", ", failed)));
        System.out.flush();
        Runtime.getRuntime().halt(failed.isEmpty() ? 0 : 1);
    }

    static void check(String name, Check c) {
        long t0 = System.nanoTime();
        try {
            String detail = c.run();
            passed++;
            System.out.println("PASS " + name + " (" + ms(t0) + " ms): " + detail);
        } catch (Throwable e) {
            failed.add(name);
            System.out.println("FAIL " + name + " (" + ms(t0) + " ms): " + e);
            e.printStackTrace(System.out);
        }
        System.out.flush();
    }

    static long ms(long t0) {
        return (System.nanoTime() - t0) / 1_000_000;
    }

    static void require(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void requireEq(Object expected, Object actual, String what) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    /** Polls until `probe` holds or `ms` pass; fails with `what` then. */
    static void await(String what, long ms, BooleanSupplier probe) throws InterruptedException {
        long deadline = System.nanoTime() + ms * 1_000_000;
        while (true) {
            if (probe.getAsBoolean()) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("not within " + ms + " ms: " + what);
            }
            Thread.sleep(20);
        }
    }

    static <T> T poll(BlockingQueue<T> q, long ms, String what) throws InterruptedException {
        T v = q.poll(ms, TimeUnit.MILLISECONDS);
        if (v == null) {
            throw new AssertionError("not within " + ms + " ms: " + what);
        }
        return v;
    }

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String s(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    static CuratorFramework client() throws Exception {
        return client(hosts);
    }

    static CuratorFramework client(String connect) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(SESSION_TIMEOUT_MS)
                .connectionTimeoutMs(5_000)
                .retryPolicy(new ExponentialBackoffRetry(100, 5, 1_000))
                .build();
        c.start();
        if (!c.blockUntilConnected(10, TimeUnit.SECONDS)) {
            c.close();
            throw new AssertionError("Curator did not connect to " + connect + " within 10 s");
        }
        return c;
    }

    /** A probe that never throws: null when the node is missing or on error. */
    static Stat stat(CuratorFramework c, String path) {
        try {
            return c.checkExists().forPath(path);
        } catch (Exception e) {
            return null;
        }
    }

    /** The member (host:port) a ZooKeeper handle is connected to. */
    static String remoteOf(ZooKeeper zk) {
        // ZooKeeper.toString(): "... remoteserver:/127.0.0.1:21381 lastZxid:..."
        Matcher m = Pattern.compile("remoteserver:\\S*?/?([0-9.]+):(\\d+)").matcher(zk.toString());
        require(m.find(), "no remote server in " + zk);
        return m.group(1) + ":" + m.group(2);
    }

    /** A four-letter word's answer from one member. */
    static String word(String member, String word) throws Exception {
        String[] hp = member.split(":");
        try (Socket sock = new Socket()) {
            sock.connect(new InetSocketAddress(hp[0], Integer.parseInt(hp[1])), 2_000);
            sock.setSoTimeout(2_000);
            OutputStream out = sock.getOutputStream();
            out.write(b(word));
            out.flush();
            InputStream in = sock.getInputStream();
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[4096];
            for (int n; (n = in.read(chunk)) > 0; ) {
                buf.write(chunk, 0, n);
            }
            return buf.toString(StandardCharsets.UTF_8);
        }
    }

    /** Sum of `Total watches:` over all members (wchs). */
    static int totalWatches() throws Exception {
        int total = 0;
        for (String m : members) {
            String text = word(m, "wchs");
            Matcher mt = Pattern.compile("Total watches:(\\d+)").matcher(text);
            require(mt.find(), "wchs of " + m + " has no total: " + text);
            total += Integer.parseInt(mt.group(1));
        }
        return total;
    }

    // ---------------------------------------------------------------- checks

    static String connect() throws Exception {
        try (CuratorFramework c = client()) {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            require(zk.getState() == ZooKeeper.States.CONNECTED, "state " + zk.getState());
            require(zk.getSessionId() != 0, "session id 0");
            requireEq(16, zk.getSessionPasswd().length, "password length");
            requireEq(SESSION_TIMEOUT_MS, zk.getSessionTimeout(), "negotiated session timeout");
            List<String> reserved = new ArrayList<>(c.getChildren().forPath("/zookeeper"));
            Collections.sort(reserved);
            require(reserved.containsAll(Arrays.asList("config", "quota")),
                    "/zookeeper children " + reserved);
            // What Curator's EnsembleTracker reads on every connect.
            byte[] config = c.getConfig().forEnsemble();
            require(config != null, "getConfig returned null");
            return String.format("session 0x%x via %s, timeout %d ms, /zookeeper %s, config %d bytes",
                    zk.getSessionId(), remoteOf(zk), zk.getSessionTimeout(), reserved, config.length);
        }
    }

    static String createContainers() throws Exception {
        try (CuratorFramework c = client()) {
            c.create().creatingParentContainersIfNeeded().forPath("/cc/a/b/leaf", b("leaf"));
            requireEq("leaf", s(c.getData().forPath("/cc/a/b/leaf")), "leaf data");
            for (String p : new String[] {"/cc", "/cc/a", "/cc/a/b"}) {
                Stat st = stat(c, p);
                require(st != null, p + " missing");
                requireEq(0L, st.getEphemeralOwner(), p + " ephemeralOwner (containers show 0)");
            }
            // Containers, not plain nodes: once their last child goes, the
            // server removes them, level by level.
            c.delete().forPath("/cc/a/b/leaf");
            await("/cc/a/b reaped after its last child went", 10_000, () -> stat(c, "/cc/a/b") == null);
            await("/cc reaped after /cc/a went", 10_000, () -> stat(c, "/cc") == null);
            // A container that never had a child stays (the server sweeps
            // every 200 ms in Synod, every 500 ms in the reference run).
            c.create().withMode(CreateMode.CONTAINER).forPath("/cc3");
            Thread.sleep(1_000);
            require(stat(c, "/cc3") != null, "a never-used container was reaped");
            c.delete().forPath("/cc3");
            return "parents created as containers (owner 0), reaped level by level once emptied; unused container kept";
        }
    }

    static String create2Stat() throws Exception {
        try (CuratorFramework c = client()) {
            long before = System.currentTimeMillis();
            Stat st = new Stat();
            String path = c.create().storingStatIn(st).forPath("/c2", b("hello"));
            requireEq("/c2", path, "created path");
            require(st.getCzxid() > 0, "czxid " + st.getCzxid());
            requireEq(st.getCzxid(), st.getMzxid(), "mzxid of a new node");
            requireEq(st.getCzxid(), st.getPzxid(), "pzxid of a new node");
            requireEq(0, st.getVersion(), "version");
            requireEq(0, st.getCversion(), "cversion");
            requireEq(0, st.getAversion(), "aversion");
            requireEq(5, st.getDataLength(), "dataLength");
            requireEq(0, st.getNumChildren(), "numChildren");
            requireEq(0L, st.getEphemeralOwner(), "ephemeralOwner");
            require(Math.abs(st.getCtime() - before) < 60_000, "ctime " + st.getCtime() + " vs now " + before);
            requireEq(st.getCtime(), st.getMtime(), "mtime of a new node");
            Stat again = c.checkExists().forPath("/c2");
            requireEq(st, again, "stat from create2 vs exists");
            // A sequential ephemeral through create2: the name and owner.
            Stat st2 = new Stat();
            String seq = c.create().storingStatIn(st2).withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath("/c2/s-");
            require(seq.matches("/c2/s-\\d{10}"), "sequential name " + seq);
            requireEq(c.getZookeeperClient().getZooKeeper().getSessionId(), st2.getEphemeralOwner(), "owner of an ephemeral");
            try {
                c.create().forPath("/c2", b("again"));
                throw new AssertionError("creating an existing node succeeded");
            } catch (KeeperException.NodeExistsException expected) {
            }
            return String.format("create2 stat czxid=0x%x version=0 dataLength=5 equals exists(); %s owned by the session; NodeExists", st.getCzxid(), seq);
        }
    }

    static String setGetVersions() throws Exception {
        try (CuratorFramework c = client()) {
            c.create().forPath("/sv", b("v0"));
            Stat s1 = c.setData().withVersion(0).forPath("/sv", b("v1"));
            requireEq(1, s1.getVersion(), "version after set");
            require(s1.getMzxid() > s1.getCzxid(), "mzxid advanced");
            Stat got = new Stat();
            requireEq("v1", s(c.getData().storingStatIn(got).forPath("/sv")), "data after set");
            requireEq(s1, got, "stat from setData vs getData");
            try {
                c.setData().withVersion(0).forPath("/sv", b("stale"));
                throw new AssertionError("setData with a stale version succeeded");
            } catch (KeeperException.BadVersionException expected) {
            }
            requireEq("v1", s(c.getData().forPath("/sv")), "data after the refused set");
            Stat s2 = c.setData().forPath("/sv", b("v2")); // version -1: any
            requireEq(2, s2.getVersion(), "version after an unconditional set");
            try {
                c.delete().withVersion(1).forPath("/sv");
                throw new AssertionError("delete with a stale version succeeded");
            } catch (KeeperException.BadVersionException expected) {
            }
            c.delete().withVersion(2).forPath("/sv");
            try {
                c.getData().forPath("/sv");
                throw new AssertionError("getData of a deleted node succeeded");
            } catch (KeeperException.NoNodeException expected) {
            }
            return "set v0->1, stale set/delete BadVersion, unconditional set ->2, delete v2, NoNode after";
        }
    }

    static String interProcessMutex() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            InterProcessMutex ma = new InterProcessMutex(a, "/locks/m");
            InterProcessMutex mb = new InterProcessMutex(b, "/locks/m");
            require(ma.acquire(5, TimeUnit.SECONDS), "A could not take a free lock");
            require(!mb.acquire(300, TimeUnit.MILLISECONDS), "B took the lock A holds");
            // (B's session deleted its node: read through it, or sync first.)
            requireEq(1, b.getChildren().forPath("/locks/m").size(), "lock nodes after B gave up");
            require(ma.acquire(1, TimeUnit.SECONDS), "A could not re-enter");
            ma.release();
            require(ma.isAcquiredInThisProcess(), "A lost the lock after one of two releases");

            // B waits (a watch on A's lock node) and gets it when A releases.
            ExecutorService pool = Executors.newFixedThreadPool(2);
            try {
                // (A Curator mutex belongs to the thread that took it.)
                long[] acquiredAt = new long[1];
                Future<Boolean> waiting = pool.submit(() -> {
                    boolean ok = mb.acquire(10, TimeUnit.SECONDS);
                    acquiredAt[0] = System.nanoTime();
                    if (ok) {
                        mb.release();
                    }
                    return ok;
                });
                Thread.sleep(500);
                require(!waiting.isDone(), "B got the lock while A held it");
                long releasedAt = System.nanoTime();
                ma.release();
                require(waiting.get(10, TimeUnit.SECONDS), "B did not get the lock after A released it");
                long handoverMs = (acquiredAt[0] - releasedAt) / 1_000_000;
                require(handoverMs < 5_000, "handover took " + handoverMs + " ms");

                // Mutual exclusion under contention.
                AtomicInteger inside = new AtomicInteger();
                AtomicInteger maxInside = new AtomicInteger();
                AtomicInteger entries = new AtomicInteger();
                List<Future<Void>> workers = new ArrayList<>();
                for (InterProcessMutex m : new InterProcessMutex[] {ma, mb}) {
                    workers.add(pool.submit(() -> {
                        for (int i = 0; i < 5; i++) {
                            require(m.acquire(10, TimeUnit.SECONDS), "acquire under contention");
                            try {
                                maxInside.accumulateAndGet(inside.incrementAndGet(), Math::max);
                                entries.incrementAndGet();
                                Thread.sleep(20);
                                inside.decrementAndGet();
                            } finally {
                                m.release();
                            }
                        }
                        return null;
                    }));
                }
                for (Future<Void> w : workers) {
                    w.get(30, TimeUnit.SECONDS);
                }
                requireEq(1, maxInside.get(), "most holders at once");
                requireEq(10, entries.get(), "entries");
                a.sync().forPath("/locks/m");
                requireEq(0, a.getChildren().forPath("/locks/m").size(), "lock nodes left");
                return "exclusive (B refused while A held), reentrant, B woken by A's release in " + handoverMs
                        + " ms, 10 contended entries with at most 1 holder";
            } finally {
                pool.shutdownNow();
            }
        }
    }

    static String leaderLatch() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            LeaderLatch la = new LeaderLatch(a, "/latch", "a");
            LeaderLatch lb = new LeaderLatch(b, "/latch", "b");
            la.start();
            lb.start();
            try {
                await("one leader", 10_000, () -> la.hasLeadership() || lb.hasLeadership());
                Thread.sleep(300);
                require(la.hasLeadership() ^ lb.hasLeadership(), "leaders: a=" + la.hasLeadership() + " b=" + lb.hasLeadership());
                LeaderLatch leader = la.hasLeadership() ? la : lb;
                LeaderLatch other = leader == la ? lb : la;
                requireEq(leader.getId(), other.getLeader().getId(), "leader seen by the other");
                requireEq(2, leader.getParticipants().size(), "participants");
                leader.close();
                require(other.await(10, TimeUnit.SECONDS), "leadership did not move when the leader closed");
                requireEq(other.getId(), other.getLeader().getId(), "new leader");
                requireEq(1, other.getParticipants().size(), "participants after close");
                return "leader " + leader.getId() + ", then " + other.getId() + " after " + leader.getId() + " closed";
            } finally {
                for (LeaderLatch l : new LeaderLatch[] {la, lb}) {
                    if (l.getState() == LeaderLatch.State.STARTED) {
                        l.close();
                    }
                }
            }
        }
    }

    static String curatorCache() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            a.create().forPath("/cache", b("root"));
            a.create().forPath("/cache/pre", b("p"));
            BlockingQueue<String> events = new LinkedBlockingQueue<>();
            CountDownLatch initialized = new CountDownLatch(1);
            int watchesBefore = totalWatches();
            CuratorCache cache = CuratorCache.build(a, "/cache");
            cache.listenable().addListener(new CuratorCacheListener() {
                @Override
                public void event(Type type, org.apache.curator.framework.recipes.cache.ChildData oldData,
                                  org.apache.curator.framework.recipes.cache.ChildData data) {
                    org.apache.curator.framework.recipes.cache.ChildData d = data != null ? data : oldData;
                    events.add(type + " " + d.getPath() + (data != null ? " " + s(data.getData()) : ""));
                }

                @Override
                public void initialized() {
                    initialized.countDown();
                }
            });
            cache.start();
            try {
                require(initialized.await(10, TimeUnit.SECONDS), "cache not initialized");
                List<String> initial = new ArrayList<>();
                events.drainTo(initial);
                Collections.sort(initial);
                requireEq(Arrays.asList("NODE_CREATED /cache root", "NODE_CREATED /cache/pre p"), initial, "initial events");
                requireEq(watchesBefore + 1, totalWatches(), "server watches with the cache's recursive watch");
                b.create().forPath("/cache/x", b("1"));
                requireEq("NODE_CREATED /cache/x 1", poll(events, 5_000, "create event"), "event");
                b.create().forPath("/cache/x/y", b("2"));
                requireEq("NODE_CREATED /cache/x/y 2", poll(events, 5_000, "deep create event"), "event");
                b.setData().forPath("/cache/x", b("3"));
                requireEq("NODE_CHANGED /cache/x 3", poll(events, 5_000, "change event"), "event");
                b.delete().forPath("/cache/x/y");
                requireEq("NODE_DELETED /cache/x/y", poll(events, 5_000, "deep delete event"), "event");
                b.delete().forPath("/cache/x");
                requireEq("NODE_DELETED /cache/x", poll(events, 5_000, "delete event"), "event");
                Thread.sleep(200);
                require(events.isEmpty(), "unexpected events " + events);
                requireEq(2, cache.size(), "cache size");
            } finally {
                cache.close();
            }
            // Closing sends checkWatches for the recursive watch: ZooKeeper
            // only checks that it exists, the client forgets it, and the
            // server keeps it until the session ends.
            b.create().forPath("/cache/after", b("4"));
            Thread.sleep(300);
            require(events.isEmpty(), "events after close " + events);
            requireEq(watchesBefore + 1, totalWatches(), "server watches after close (checkWatches does not remove)");
            return "initial 2 nodes; create, deep create, change, deep delete, delete seen in order; one recursive watch on the server (wchs); quiet after close";
        }
    }

    static String persistentNode() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            PersistentNode pn = new PersistentNode(a, CreateMode.EPHEMERAL, false, "/pn/node", b("mine"));
            pn.start();
            try {
                require(pn.waitForInitialCreate(5, TimeUnit.SECONDS), "initial create");
                long owner = a.getZookeeperClient().getZooKeeper().getSessionId();
                b.sync().forPath("/pn/node");
                Stat st = stat(b, "/pn/node");
                require(st != null, "node missing");
                requireEq(owner, st.getEphemeralOwner(), "owner");
                requireEq("mine", s(b.getData().forPath("/pn/node")), "data");
                // Someone deletes it: the recipe's exists-watch fires and it recreates.
                b.delete().forPath("/pn/node");
                await("recreated after deletion", 5_000, () -> {
                    Stat again = stat(b, "/pn/node");
                    return again != null && again.getCzxid() > st.getCzxid();
                });
                requireEq(owner, stat(b, "/pn/node").getEphemeralOwner(), "owner after recreation");
                pn.setData(b("changed")); // written in the background
                await("data set through the recipe", 5_000, () -> {
                    try {
                        return "changed".equals(s(b.getData().forPath("/pn/node")));
                    } catch (Exception e) {
                        return false;
                    }
                });
            } finally {
                pn.close();
            }
            b.sync().forPath("/pn");
            await("deleted on close", 5_000, () -> stat(b, "/pn/node") == null);
            return "ephemeral created, recreated after another client deleted it, data updated, deleted on close";
        }
    }

    static String persistentTtlNode() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            // A plain TTL node first (createTTL): it goes once idle past its TTL.
            Stat ttlStat = new Stat();
            a.create().withTtl(1_000).storingStatIn(ttlStat).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/ttl-plain", b("t"));
            requireEq(0L, ttlStat.getEphemeralOwner(), "ephemeralOwner of a TTL node");
            await("TTL node reaped", 10_000, () -> stat(b, "/ttl-plain") == null);

            long ttl = 1_000;
            PersistentTtlNode node = new PersistentTtlNode(a, "/ttl/node", ttl, b("ttl-data"));
            node.start();
            long closedAt;
            try {
                require(node.waitForInitialCreate(5, TimeUnit.SECONDS), "initial create");
                await("touch child created", 5_000, () -> stat(b, "/ttl/node/touch") != null);
                // Touched every ttl/2, so both outlive several TTLs.
                Thread.sleep(3 * ttl);
                require(stat(b, "/ttl/node") != null, "node reaped while touched");
                require(stat(b, "/ttl/node/touch") != null, "touch child reaped while touched");
                requireEq("ttl-data", s(b.getData().forPath("/ttl/node")), "data");
            } finally {
                node.close();
                closedAt = System.nanoTime();
            }
            // Untouched: the TTL child expires, then its container parent goes.
            await("touch child reaped after close", 10_000, () -> stat(b, "/ttl/node/touch") == null);
            await("container reaped after its TTL child", 10_000, () -> stat(b, "/ttl/node") == null);
            long goneMs = (System.nanoTime() - closedAt) / 1_000_000;
            require(goneMs >= ttl / 2, "gone " + goneMs + " ms after close, before its TTL");
            return "TTL node (owner 0) reaped; PersistentTtlNode alive " + 3 * ttl + " ms while touched, gone " + goneMs + " ms after close";
        }
    }

    static String distributedAtomicLong() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            DistributedAtomicLong ca = new DistributedAtomicLong(a, "/counter", new RetryNTimes(200, 5));
            DistributedAtomicLong cb = new DistributedAtomicLong(b, "/counter", new RetryNTimes(200, 5));
            ExecutorService pool = Executors.newFixedThreadPool(2);
            try {
                List<Future<Integer>> fs = new ArrayList<>();
                for (DistributedAtomicLong c : new DistributedAtomicLong[] {ca, cb}) {
                    fs.add(pool.submit(() -> {
                        int ok = 0;
                        for (int i = 0; i < 20; i++) {
                            if (c.increment().succeeded()) {
                                ok++;
                            }
                        }
                        return ok;
                    }));
                }
                int succeeded = fs.get(0).get(30, TimeUnit.SECONDS) + fs.get(1).get(30, TimeUnit.SECONDS);
                requireEq(40, succeeded, "succeeded increments");
            } finally {
                pool.shutdownNow();
            }
            b.sync().forPath("/counter");
            AtomicValue<Long> v = cb.get();
            require(v.succeeded(), "get");
            requireEq(40L, v.postValue(), "value after 40 increments from two clients");
            AtomicValue<Long> cas = ca.compareAndSet(40L, 100L);
            require(cas.succeeded(), "compareAndSet(40, 100)");
            AtomicValue<Long> bad = cb.compareAndSet(40L, 5L);
            require(!bad.succeeded(), "compareAndSet(40, 5) after the value became 100");
            requireEq(100L, cb.get().postValue(), "value");
            return "40 concurrent increments from 2 clients -> 40; CAS 40->100 ok; stale CAS refused";
        }
    }

    static String sharedCount() throws Exception {
        try (CuratorFramework a = client(); CuratorFramework b = client()) {
            SharedCount sa = new SharedCount(a, "/shared", 0);
            SharedCount sb = new SharedCount(b, "/shared", 0);
            BlockingQueue<Integer> seenByB = new LinkedBlockingQueue<>();
            sb.addListener(new SharedCountListener() {
                @Override
                public void countHasChanged(SharedCountReader reader, int newCount) {
                    seenByB.add(newCount);
                }

                @Override
                public void stateChanged(CuratorFramework client, ConnectionState state) {
                }
            });
            sa.start();
            sb.start();
            try {
                VersionedValue<Integer> stale = sb.getVersionedValue();
                requireEq(0, stale.getValue(), "seed");
                require(sa.trySetCount(sa.getVersionedValue(), 7), "trySetCount with the current version");
                requireEq(7, poll(seenByB, 5_000, "B told of 7 by its watch"), "count B saw");
                require(!sb.trySetCount(stale, 9), "trySetCount with a stale version succeeded");
                requireEq(7, sb.getCount(), "count after the refused set");
                sb.setCount(11);
                await("A sees 11", 5_000, () -> sa.getCount() == 11);
                return "7 set by A seen by B through its watch; B's stale trySetCount refused; 11 set by B seen by A";
            } finally {
                sa.close();
                sb.close();
            }
        }
    }

    static String transaction() throws Exception {
        try (CuratorFramework c = client()) {
            c.create().forPath("/tx", b(""));
            List<CuratorOp> ops = Arrays.asList(
                    c.transactionOp().create().forPath("/tx/a", b("a")),
                    c.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/tx/s-", b("s")),
                    c.transactionOp().setData().withVersion(0).forPath("/tx/a", b("a2")),
                    c.transactionOp().create().forPath("/tx/b", b("b")),
                    c.transactionOp().check().withVersion(0).forPath("/tx/b"),
                    c.transactionOp().delete().withVersion(0).forPath("/tx/b"));
            List<CuratorTransactionResult> results = c.transaction().forOperations(ops);
            requireEq(6, results.size(), "results");
            List<OperationType> types = new ArrayList<>();
            for (CuratorTransactionResult r : results) {
                types.add(r.getType());
                requireEq(0, r.getError(), "error of " + r.getType() + " " + r.getForPath());
            }
            requireEq(Arrays.asList(OperationType.CREATE, OperationType.CREATE, OperationType.SET_DATA,
                    OperationType.CREATE, OperationType.CHECK, OperationType.DELETE), types, "result types");
            requireEq("/tx/a", results.get(0).getResultPath(), "created path");
            String seq = results.get(1).getResultPath();
            require(seq.matches("/tx/s-\\d{10}"), "sequential path " + seq);
            requireEq(1, results.get(2).getResultStat().getVersion(), "setData stat version");
            requireEq("a2", s(c.getData().forPath("/tx/a")), "data after the transaction");
            require(stat(c, "/tx/b") == null, "/tx/b created and deleted in one transaction still exists");
            List<String> kids = new ArrayList<>(c.getChildren().forPath("/tx"));
            Collections.sort(kids);
            requireEq(Arrays.asList("a", seq.substring("/tx/".length())), kids, "children");
            return "6 ops committed: types " + types + ", " + seq + ", setData version 1";
        }
    }

    static String transactionFailing() throws Exception {
        try (CuratorFramework c = client(); CuratorFramework other = client()) {
            c.create().creatingParentsIfNeeded().forPath("/txf/a", b("a"));
            Stat before = c.checkExists().forPath("/txf/a");
            // A data watch (other session) and a child watch on /txf: a
            // failed transaction must fire neither.
            BlockingQueue<WatchedEvent> watched = new LinkedBlockingQueue<>();
            other.getData().usingWatcher((Watcher) watched::add).forPath("/txf/a");
            other.getChildren().usingWatcher((Watcher) watched::add).forPath("/txf");
            List<CuratorOp> ops = Arrays.asList(
                    c.transactionOp().setData().forPath("/txf/a", b("changed")),
                    c.transactionOp().check().withVersion(99).forPath("/txf/a"),
                    c.transactionOp().create().forPath("/txf/c", b("c")));
            // Foreground: the first failing code, with every op's result.
            List<Integer> codes = new ArrayList<>();
            try {
                c.transaction().forOperations(ops);
                throw new AssertionError("a transaction with a stale check committed");
            } catch (KeeperException e) {
                requireEq(KeeperException.Code.BADVERSION, e.code(), "transaction error");
                require(e.getResults() != null, "no results attached");
                for (OpResult r : e.getResults()) {
                    require(r instanceof OpResult.ErrorResult, "result " + r);
                    codes.add(((OpResult.ErrorResult) r).getErr());
                }
            }
            requireEq(Arrays.asList(0, KeeperException.Code.BADVERSION.intValue(),
                    KeeperException.Code.RUNTIMEINCONSISTENCY.intValue()), codes, "per-op codes");
            // Background: results with their errors through Curator's event.
            BlockingQueue<org.apache.curator.framework.api.CuratorEvent> done = new LinkedBlockingQueue<>();
            c.transaction().inBackground((cl, event) -> done.add(event)).forOperations(ops);
            org.apache.curator.framework.api.CuratorEvent ev = poll(done, 5_000, "background transaction result");
            requireEq(KeeperException.Code.BADVERSION.intValue(), ev.getResultCode(), "background result code");
            List<Integer> bgCodes = new ArrayList<>();
            for (CuratorTransactionResult r : ev.getOpResults()) {
                bgCodes.add(r.getError());
            }
            requireEq(codes, bgCodes, "background per-op errors");
            // Nothing applied, nothing fired.
            requireEq(before, c.checkExists().forPath("/txf/a"), "stat of /txf/a");
            requireEq("a", s(c.getData().forPath("/txf/a")), "data of /txf/a");
            require(stat(c, "/txf/c") == null, "/txf/c exists");
            Thread.sleep(300);
            require(watched.isEmpty(), "a failed transaction fired " + watched);
            // The watches were there: a real change fires them.
            c.setData().forPath("/txf/a", b("now"));
            WatchedEvent fired = poll(watched, 5_000, "data watch after a real change");
            requireEq(Watcher.Event.EventType.NodeDataChanged, fired.getType(), "event type");
            return "foreground BadVersion with per-op codes " + codes + ", background the same; nothing applied, no watch fired";
        }
    }

    static String watchRemoveOne() throws Exception {
        try (CuratorFramework c = client(); CuratorFramework w = client()) {
            c.create().forPath("/wr1", b("0"));
            w.sync().forPath("/wr1");
            int base = totalWatches();
            BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
            Watcher watcher = events::add;
            w.getData().usingWatcher(watcher).forPath("/wr1");
            requireEq(base + 1, totalWatches(), "server watches after getData with a watcher");
            // One watcher: the client sends checkWatches (17); on success it
            // reports DataWatchRemoved to the watcher itself.
            w.watchers().remove(watcher).ofType(Watcher.WatcherType.Data).forPath("/wr1");
            WatchedEvent removed = poll(events, 5_000, "DataWatchRemoved");
            requireEq(Watcher.Event.EventType.DataWatchRemoved, removed.getType(), "event");
            c.setData().forPath("/wr1", b("1"));
            Thread.sleep(300);
            require(events.isEmpty(), "the removed watcher saw " + events);
            // checkWatches leaves the server's watch in place (ZooKeeper
            // drops it when it next fires); it fired on that set.
            requireEq(base, totalWatches(), "server watches after the watched node changed");
            // Removing a watcher the client does not hold is refused.
            try {
                w.watchers().remove(watcher).ofType(Watcher.WatcherType.Data).forPath("/wr1");
                throw new AssertionError("removing an absent watcher succeeded");
            } catch (KeeperException.NoWatcherException expected) {
            }
            return "checkWatches removal reported DataWatchRemoved; no event after; absent watcher NoWatcher";
        }
    }

    static String watchRemoveAllPersistent() throws Exception {
        try (CuratorFramework c = client(); CuratorFramework w = client()) {
            c.create().forPath("/wr2", b("0"));
            int base = totalWatches();
            BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
            Watcher watcher = events::add;
            w.watchers().add().withMode(AddWatchMode.PERSISTENT_RECURSIVE).usingWatcher(watcher).forPath("/wr2");
            requireEq(base + 1, totalWatches(), "server watches after addWatch");
            c.create().forPath("/wr2/k", b("k"));
            c.setData().forPath("/wr2/k", b("k2"));
            c.create().forPath("/wr2/k/deep", b("d"));
            c.delete().forPath("/wr2/k/deep");
            c.setData().forPath("/wr2", b("1"));
            List<String> got = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                WatchedEvent e = poll(events, 5_000, "recursive event " + (i + 1));
                got.add(e.getType() + " " + e.getPath());
            }
            requireEq(Arrays.asList("NodeCreated /wr2/k", "NodeDataChanged /wr2/k", "NodeCreated /wr2/k/deep",
                    "NodeDeleted /wr2/k/deep", "NodeDataChanged /wr2"), got, "recursive events (no NodeChildrenChanged)");
            Thread.sleep(200);
            require(events.isEmpty(), "extra events " + events);
            // removeAll: the client sends removeWatches (18), the server drops
            // the watch, and the client reports PersistentWatchRemoved.
            w.watchers().removeAll().ofType(Watcher.WatcherType.Any).forPath("/wr2");
            WatchedEvent removed = poll(events, 5_000, "PersistentWatchRemoved");
            requireEq(Watcher.Event.EventType.PersistentWatchRemoved, removed.getType(), "event");
            requireEq(base, totalWatches(), "server watches after removeWatches");
            c.setData().forPath("/wr2", b("2"));
            c.create().forPath("/wr2/after", b("a"));
            Thread.sleep(300);
            require(events.isEmpty(), "events after removal " + events);
            return "recursive watch events " + got.size() + " in order, no child events; removeWatches dropped it on the server (wchs)";
        }
    }

    static String sessionReattachedElsewhere() throws Exception {
        try (CuratorFramework observer = client(); CuratorFramework c = client()) {
            BlockingQueue<ConnectionState> states = new LinkedBlockingQueue<>();
            c.getConnectionStateListenable().addListener((cl, st) -> states.add(st));
            c.create().creatingParentsIfNeeded().withMode(CreateMode.EPHEMERAL).forPath("/reattach/eph", b("e"));
            PersistentNode pn = new PersistentNode(c, CreateMode.EPHEMERAL, false, "/reattach/pn", b("p"));
            pn.start();
            try {
                require(pn.waitForInitialCreate(5, TimeUnit.SECONDS), "PersistentNode initial create");
                ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
                long sid = zk.getSessionId();
                byte[] pw = zk.getSessionPasswd();
                String home = remoteOf(zk);
                String elsewhere = members.stream().filter(m -> !m.equals(home)).findFirst().orElseThrow();
                observer.sync().forPath("/reattach");
                requireEq(sid, observer.checkExists().forPath("/reattach/eph").getEphemeralOwner(), "ephemeral owner");

                CountDownLatch attached = new CountDownLatch(1);
                List<Watcher.Event.KeeperState> rawStates = new CopyOnWriteArrayList<>();
                ZooKeeper raw = new ZooKeeper(elsewhere, SESSION_TIMEOUT_MS, e -> {
                    rawStates.add(e.getState());
                    if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                        attached.countDown();
                    }
                }, sid, pw);
                try {
                    require(attached.await(5, TimeUnit.SECONDS), "raw re-attach to " + elsewhere + " did not connect: " + rawStates);
                    requireEq(sid, raw.getSessionId(), "re-attached session id");
                    require(Arrays.equals(pw, raw.getSessionPasswd()), "re-attached password");
                    // The session is usable from its new connection.
                    CountDownLatch synced = new CountDownLatch(1);
                    raw.sync("/reattach", (rc, p, ctx) -> synced.countDown(), null);
                    require(synced.await(5, TimeUnit.SECONDS), "sync through the re-attached session");
                    requireEq("e", s(raw.getData("/reattach/eph", false, null)), "read through the re-attached session");
                } finally {
                    raw.close(); // closeSession: ends the session everywhere
                }

                // The original client learns its session is gone.
                long t0 = System.nanoTime();
                while (true) {
                    ConnectionState st = poll(states, 20_000 - ms(t0), "LOST after the session was closed elsewhere");
                    if (st == ConnectionState.LOST) {
                        break;
                    }
                }
                long lostMs = ms(t0);
                observer.sync().forPath("/reattach");
                require(observer.checkExists().forPath("/reattach/eph") == null, "ephemeral of the closed session still exists");
                // Curator makes a new session; the PersistentNode comes back under it.
                require(c.blockUntilConnected(10, TimeUnit.SECONDS), "Curator did not reconnect");
                await("PersistentNode recreated under the new session", 10_000, () -> {
                    try {
                        long now = c.getZookeeperClient().getZooKeeper().getSessionId();
                        Stat st = stat(observer, "/reattach/pn");
                        return now != sid && st != null && st.getEphemeralOwner() == now;
                    } catch (Exception e) {
                        return false;
                    }
                });
                long newSid = c.getZookeeperClient().getZooKeeper().getSessionId();
                return String.format("session 0x%x (on %s) re-attached on %s and closed; original LOST after %d ms, ephemeral gone, PersistentNode back under 0x%x",
                        sid, home, elsewhere, lostMs, newSid);
            } finally {
                pn.close();
            }
        }
    }
}
