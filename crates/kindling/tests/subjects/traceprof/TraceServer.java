// Trace-profiling subject (Java 17): the JDK's HTTP server, whose dispatcher
// thread reads each request and hands it to a fixed pool thread, which for
// `GET /work` spends
//   ~150 ms of thread CPU time in TraceServer.burnCpu,
//   ~200 ms waiting on PostgreSQL (`SELECT pg_sleep(0.2)`, wire protocol v3
//   spoken by hand over one connection per server, opened on first use),
//   ~100 ms blocked on a ReentrantLock a helper thread holds,
// then answers 200. Run with -XX:+PreserveFramePointer (and burnCpu kept out
// of line) so JIT-compiled frames can be walked and named.
// Usage: java TraceServer PG_PORT. Prints its port on stdout; per request,
// its own timings on stderr:
//   timing trace=<id|-> cpu_ms X burn_wall_ms X pg_ms X lock_ms X total_ms X
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.locks.ReentrantLock;

public class TraceServer {
    static final ThreadMXBean MX = ManagementFactory.getThreadMXBean();
    static volatile long sink;

    /** Busy until `ms` of this thread's CPU time is spent (clock read every ~100k iterations). */
    static void burnCpu(double ms) {
        long start = MX.getCurrentThreadCpuTime();
        long limit = (long) (ms * 1e6);
        long x = 88172645463325252L;
        do {
            for (int i = 0; i < 100_000; i++) {
                x ^= x << 13;
                x ^= x >>> 7;
                x ^= x << 17;
            }
            sink = x;
        } while (MX.getCurrentThreadCpuTime() - start < limit);
    }

    // ------------------------------------------------------------ PostgreSQL

    /** One connection to a trust-authenticated PostgreSQL, simple queries only. */
    static final class Pg {
        final Socket sock;
        final DataInputStream in;
        final DataOutputStream out;

        Pg(int port) throws IOException {
            sock = new Socket("127.0.0.1", port);
            in = new DataInputStream(new BufferedInputStream(sock.getInputStream()));
            // Buffered and flushed per message, as drivers do: each message
            // leaves in one send.
            out = new DataOutputStream(new BufferedOutputStream(sock.getOutputStream()));
            byte[] params = "user\0postgres\0database\0postgres\0\0".getBytes(StandardCharsets.US_ASCII);
            out.writeInt(8 + params.length);
            out.writeInt(196608); // protocol 3.0
            out.write(params);
            out.flush();
            untilReady();
        }

        void query(String sql) throws IOException {
            byte[] q = (sql + "\0").getBytes(StandardCharsets.UTF_8);
            out.writeByte('Q');
            out.writeInt(4 + q.length);
            out.write(q);
            out.flush();
            untilReady();
        }

        /** Reads backend messages until ReadyForQuery; fails on an error or a non-trust auth request. */
        void untilReady() throws IOException {
            for (;;) {
                int type = in.readUnsignedByte();
                int len = in.readInt();
                if (len < 4 || len > (1 << 24)) throw new IOException("bad postgres message length " + len);
                byte[] body = new byte[len - 4];
                in.readFully(body);
                if (type == 'E') throw new IOException("postgres error: " + new String(body, StandardCharsets.UTF_8).replace('\0', ' '));
                if (type == 'R' && (body.length < 4 || java.nio.ByteBuffer.wrap(body).getInt() != 0))
                    throw new IOException("postgres asks for an auth method other than trust");
                if (type == 'Z') return;
            }
        }
    }

    static int pgPort;
    static Pg pg; // opened on first use, guarded by pgLock (uncontended: requests come one at a time)
    static final Object pgLock = new Object();

    static void pgQuery(String sql) throws IOException {
        synchronized (pgLock) {
            if (pg == null) pg = new Pg(pgPort);
            pg.query(sql);
        }
    }

    // ------------------------------------------------------------ lock

    static final ReentrantLock contended = new ReentrantLock();

    /** The lock's other holder: one long-lived thread, so no thread start lands in a request. */
    static final ExecutorService holder = Executors.newSingleThreadExecutor(r -> new Thread(r, "lock-holder"));

    /** The helper takes the lock and holds it `ms`; we block acquiring it. Returns ns blocked. */
    static long waitOnLock(long ms) throws InterruptedException, ExecutionException {
        CountDownLatch held = new CountDownLatch(1);
        Future<?> done = holder.submit(() -> {
            contended.lock();
            try {
                held.countDown();
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                contended.unlock();
            }
        });
        held.await();
        long t0 = System.nanoTime();
        contended.lock();
        long blocked = System.nanoTime() - t0;
        contended.unlock();
        done.get();
        return blocked;
    }

    // ------------------------------------------------------------ HTTP

    static String traceId(HttpExchange ex) {
        String tp = ex.getRequestHeaders().getFirst("traceparent");
        if (tp == null) return "-";
        String[] p = tp.trim().split("-");
        return p.length >= 2 ? p[1] : "-";
    }

    static void work(HttpExchange ex) throws IOException {
        try {
            String trace = traceId(ex);
            long t0 = System.nanoTime(), c0 = MX.getCurrentThreadCpuTime();
            burnCpu(150);
            long t1 = System.nanoTime(), c1 = MX.getCurrentThreadCpuTime();
            pgQuery("SELECT pg_sleep(0.2)");
            long t2 = System.nanoTime();
            long lockNs = waitOnLock(100);
            long t3 = System.nanoTime();
            byte[] body = "done\n".getBytes(StandardCharsets.US_ASCII);
            ex.sendResponseHeaders(200, body.length);
            try (OutputStream o = ex.getResponseBody()) {
                o.write(body);
            }
            System.err.printf("timing trace=%s cpu_ms %.1f burn_wall_ms %.1f pg_ms %.1f lock_ms %.1f total_ms %.1f%n", trace,
                    (c1 - c0) / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6, lockNs / 1e6, (t3 - t0) / 1e6);
        } catch (IOException | RuntimeException | ExecutionException e) {
            System.err.println("traceserver: " + e);
            ex.sendResponseHeaders(500, -1);
            ex.close();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            ex.sendResponseHeaders(500, -1);
            ex.close();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: java TraceServer PG_PORT");
            System.exit(2);
        }
        pgPort = Integer.parseInt(args[0]);
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
        s.createContext("/work", TraceServer::work);
        s.setExecutor(Executors.newFixedThreadPool(4));
        holder.submit(() -> {}).get(); // start the helper now
        s.start();
        System.out.println(s.getAddress().getPort());
        System.out.flush();
    }
}
