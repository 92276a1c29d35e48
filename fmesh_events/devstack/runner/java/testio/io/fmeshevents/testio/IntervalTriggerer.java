package io.fmeshevents.testio;

import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.apache.pulsar.io.core.BatchSourceTriggerer;
import org.apache.pulsar.io.core.SourceContext;

/**
 * A discovery triggerer for batch sources: fires at once, then every {@code intervalMs}
 * (config, default 1000), with the event {@code interval-<n>}. Pulsar's own triggerers
 * (pulsar-io-batch-discovery-triggerers) are not on Maven Central.
 */
public class IntervalTriggerer implements BatchSourceTriggerer {

    private long intervalMs;
    private ScheduledExecutorService timer;

    @Override
    public void init(Map<String, Object> config, SourceContext sourceContext) {
        intervalMs = CountingSource.longConfig(config == null ? Map.of() : config, "intervalMs", 1000);
        if (intervalMs <= 0) {
            throw new IllegalArgumentException("intervalMs must be positive");
        }
    }

    @Override
    public void start(Consumer<String> trigger) {
        AtomicLong fired = new AtomicLong();
        timer = Executors.newSingleThreadScheduledExecutor(runnable -> {
            Thread thread = new Thread(runnable, "fmesh-interval-triggerer");
            thread.setDaemon(true);
            return thread;
        });
        timer.scheduleAtFixedRate(() -> trigger.accept("interval-" + fired.getAndIncrement()),
                0, intervalMs, TimeUnit.MILLISECONDS);
    }

    @Override
    public void stop() {
        if (timer != null) {
            timer.shutdownNow();
            timer = null;
        }
    }
}
