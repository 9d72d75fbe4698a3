package local.albums;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

/**
 * Runs Neo4j Community embedded as the local stack's graph server: Bolt on 127.0.0.1 only,
 * no HTTP/HTTPS, a small page cache, short transaction-log retention, auth enabled.
 *
 * <p>Usage: {@code java ... local.albums.Neo4jLauncher HOME_DIR} (or {@code -Dneo4j.home=HOME_DIR}).
 * Environment: NEO4J_BOLT_PORT (7687), NEO4J_PASSWORD (albums-neo4j), NEO4J_PAGECACHE (64m).
 *
 * <p>After the default database is available and {@code RETURN 1} ran, the password of the user
 * {@code neo4j} is set from NEO4J_PASSWORD (through the system database, so a changed variable
 * takes effect at the next start) and the line {@code NEO4J READY} is printed; the start script
 * waits for that line. SIGTERM shuts the database down cleanly through a shutdown hook.
 */
public final class Neo4jLauncher {
  private static final String DB = "neo4j";

  private Neo4jLauncher() {}

  private static String env(String name, String dflt) {
    String v = System.getenv(name);
    return v == null || v.isBlank() ? dflt : v.trim();
  }

  private static void say(String msg) {
    System.out.println(Instant.now() + " [launcher] " + msg);
    System.out.flush();
  }

  public static void main(String[] args) throws Exception {
    String home = args.length > 0 ? args[0] : System.getProperty("neo4j.home");
    if (home == null || home.isBlank()) {
      System.err.println("usage: Neo4jLauncher HOME_DIR (or -Dneo4j.home=HOME_DIR)");
      System.exit(2);
    }
    int port = Integer.parseInt(env("NEO4J_BOLT_PORT", "7687"));
    String password = env("NEO4J_PASSWORD", "albums-neo4j");

    Map<String, String> cfg = new LinkedHashMap<>();
    cfg.put("server.default_listen_address", "127.0.0.1");
    cfg.put("server.default_advertised_address", "127.0.0.1");
    cfg.put("server.bolt.enabled", "true");
    cfg.put("server.bolt.listen_address", "127.0.0.1:" + port);
    cfg.put("server.bolt.advertised_address", "127.0.0.1:" + port);
    cfg.put("server.http.enabled", "false");
    cfg.put("server.https.enabled", "false");
    cfg.put("server.memory.pagecache.size", env("NEO4J_PAGECACHE", "64m"));
    cfg.put("db.tx_log.rotation.retention_policy", "2 files");
    cfg.put("db.tx_log.rotation.size", "16M");
    cfg.put("db.tx_log.preallocate", "false");
    cfg.put("dbms.security.auth_enabled", "true");
    cfg.put("dbms.usage_report.enabled", "false"); // no phoning home (embedded default is on)

    // The builder takes typed settings or a properties file; a file keeps this to public API.
    Path homeDir = Path.of(home).toAbsolutePath();
    Files.createDirectories(homeDir);
    Path conf = homeDir.resolve("neo4j.conf");
    StringBuilder text = new StringBuilder("# written by Neo4jLauncher at every start; edits are lost\n");
    cfg.forEach((k, v) -> text.append(k).append('=').append(v).append('\n'));
    Files.writeString(conf, text.toString());

    // The hook is in place before build(), so a SIGTERM during start-up still stops cleanly.
    AtomicReference<DatabaseManagementService> service = new AtomicReference<>();
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      DatabaseManagementService dbms = service.get();
      if (dbms == null) {
        return;
      }
      say("shutting down");
      try {
        dbms.shutdown();
        say("stopped");
      } catch (Throwable t) {
        System.err.println("shutdown failed: " + t);
      } finally {
        stopped.countDown();
      }
    }, "neo4j-shutdown"));

    say("starting Neo4j in " + homeDir + " (bolt 127.0.0.1:" + port + ")");
    try {
      DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(homeDir)
          .loadPropertiesFromFile(conf)
          .build();
      service.set(dbms);
      GraphDatabaseService db = dbms.database(DB);
      if (!db.isAvailable(TimeUnit.MINUTES.toMillis(5))) {
        throw new IllegalStateException("database " + DB + " did not become available");
      }
      Object one = db.executeTransactionally("RETURN 1 AS one", Map.of(),
          r -> r.hasNext() ? r.next().get("one") : null);
      if (one == null || ((Number) one).longValue() != 1L) {
        throw new IllegalStateException("RETURN 1 gave " + one);
      }
      say("database " + DB + " answers RETURN 1");
      setPassword(dbms.database("system"), password);
    } catch (Throwable t) {
      System.err.println("start-up failed: " + t);
      t.printStackTrace();
      System.exit(1); // runs the shutdown hook
    }
    say("NEO4J READY pid=" + ProcessHandle.current().pid() + " bolt=127.0.0.1:" + port);
    stopped.await();
  }

  /** Sets the neo4j user's password; Neo4j refuses to "change" it to the same value. */
  private static void setPassword(GraphDatabaseService system, String password) {
    try {
      system.executeTransactionally("ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED",
          Map.of("pw", password));
      say("password of user neo4j set from NEO4J_PASSWORD");
    } catch (RuntimeException e) {
      String msg = String.valueOf(e.getMessage()) + " " + (e.getCause() == null ? "" : e.getCause().getMessage());
      if (msg.contains("cannot be the same")) {
        say("password of user neo4j unchanged");
      } else {
        throw e;
      }
    }
  }
}
