import com.hivemq.embedded.EmbeddedHiveMQ;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

/**
 * Runs HiveMQ CE embedded on a configuration, data and extensions folder (the three arguments).
 * Prints "started" once its listeners are up, and stops cleanly on SIGTERM.
 */
public final class Launcher {
    private Launcher() {
    }

    public static void main(String[] args) throws Exception {
        EmbeddedHiveMQ hivemq = EmbeddedHiveMQ.builder()
            .withConfigurationFolder(Path.of(args[0]))
            .withDataFolder(Path.of(args[1]))
            .withExtensionsFolder(Path.of(args[2]))
            .build();
        hivemq.start().join();
        System.out.println("started");
        System.out.flush();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            hivemq.stop().join();
            stopped.countDown();
        }));
        stopped.await();
    }
}
