package io.fmeshevents.testio;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;
import org.apache.pulsar.functions.api.Record;
import org.apache.pulsar.io.core.BatchSource;
import org.apache.pulsar.io.core.SourceContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A test batch source. Its first discovery emits {@code tasks} tasks (named 0, 1, ...); later
 * discoveries find nothing new. A task, once prepared, reads {@code recordsPerTask} strings
 * {@code <prefix><task>-<n>} (n from 0), then null (the task is done).
 * Configs: tasks (3), recordsPerTask (2), prefix ("batch-").
 *
 * <p>Pulsar runs it inside its BatchSourceExecutor: instance 0's discovery triggerer calls
 * {@link #discover}, the tasks go through an intermediate topic, and every instance prepares
 * and reads the tasks it receives.
 */
public class CountingBatchSource implements BatchSource<String> {

    private static final Logger LOG = LoggerFactory.getLogger(CountingBatchSource.class);

    private long tasks;
    private long recordsPerTask;
    private String prefix;
    private boolean discovered;
    private String task;
    private long read;

    @Override
    public void open(Map<String, Object> config, SourceContext context) {
        tasks = CountingSource.longConfig(config, "tasks", 3);
        recordsPerTask = CountingSource.longConfig(config, "recordsPerTask", 2);
        prefix = config.containsKey("prefix") ? String.valueOf(config.get("prefix")) : "batch-";
        if (tasks < 0 || recordsPerTask < 0) {
            throw new IllegalArgumentException("tasks and recordsPerTask must not be negative");
        }
        LOG.info("fmesh-batch open: {} tasks of {} records", tasks, recordsPerTask);
    }

    @Override
    public void discover(Consumer<byte[]> taskEater) {
        if (discovered) {
            LOG.info("fmesh-batch discover: nothing new");
            return;
        }
        discovered = true;
        for (long i = 0; i < tasks; i++) {
            taskEater.accept(Long.toString(i).getBytes(StandardCharsets.UTF_8));
        }
        LOG.info("fmesh-batch discover: {} tasks", tasks);
    }

    @Override
    public void prepare(byte[] task) {
        this.task = new String(task, StandardCharsets.UTF_8);
        this.read = 0;
        LOG.info("fmesh-batch prepare: task {}", this.task);
    }

    @Override
    public Record<String> readNext() {
        if (task == null || read >= recordsPerTask) {
            return null;
        }
        String value = prefix + task + "-" + read;
        String key = task + "-" + read;
        read++;
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
    }
}
