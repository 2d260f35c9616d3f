// An HTTP server (the JDK's built-in one) whose handler burns CPU in
// JavaServer.fib; prints its port. Run with -XX:+PreserveFramePointer so the
// JIT-compiled frames can be walked; the profiler names them from the perf
// map the JVM writes on `jcmd PID Compiler.perfmap`.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.concurrent.Executors;

public class JavaServer {
    static long fib(int n) {
        return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }

    static class Work implements HttpHandler {
        @Override
        public void handle(HttpExchange ex) throws IOException {
            byte[] body = (fib(30) + "\n").getBytes();
            ex.sendResponseHeaders(200, body.length);
            try (OutputStream o = ex.getResponseBody()) {
                o.write(body);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
        s.createContext("/", new Work());
        s.setExecutor(Executors.newFixedThreadPool(2));
        s.start();
        System.out.println(s.getAddress().getPort());
    }
}
