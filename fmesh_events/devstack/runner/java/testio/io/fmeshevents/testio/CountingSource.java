package io.fmeshevents.testio;

import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import org.apache.pulsar.functions.api.Record;
import org.apache.pulsar.io.core.Source;
import org.apache.pulsar.io.core.SourceContext;

/**
 * A test source: emits {@code count} strings {@code <prefix><n>} (n from 0), one every
 * {@code intervalMs}, then nothing more. Configs: count (100), prefix ("msg-"), intervalMs (0).
 */
public class CountingSource implements Source<String> {

    private long count;
    private String prefix;
    private long intervalMs;
    private long emitted;
    private final CountDownLatch closed = new CountDownLatch(1);

    @Override
    public void open(Map<String, Object> config, SourceContext context) {
        count = longConfig(config, "count", 100);
        prefix = config.containsKey("prefix") ? String.valueOf(config.get("prefix")) : "msg-";
        intervalMs = longConfig(config, "intervalMs", 0);
        if (count < 0 || intervalMs < 0) {
            throw new IllegalArgumentException("count and intervalMs must not be negative");
        }
    }

    @Override
    public Record<String> read() throws Exception {
        if (emitted >= count) {
            // Pulsar calls read() in a loop: after the last record, wait until closed.
            closed.await();
            throw new InterruptedException("source closed");
        }
        if (intervalMs > 0 && emitted > 0) {
            Thread.sleep(intervalMs);
        }
        String value = prefix + emitted;
        String key = Long.toString(emitted);
        emitted++;
        return new Record<String>() {
            @Override
            public Optional<String> getKey() {
                return Optional.of(key);
            }

            @Override
            public String getValue() {
                return value;
            }
        };
    }

    @Override
    public void close() {
        closed.countDown();
    }

    static long longConfig(Map<String, Object> config, String key, long fallback) {
        Object value = config.get(key);
        if (value == null) {
            return fallback;
        }
        if (value instanceof Number) {
            return ((Number) value).longValue();
        }
        try {
            return Long.parseLong(value.toString().trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be an integer, not " + value, e);
        }
    }
}
