package io.fmeshevents.testio;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.pulsar.functions.api.Record;
import org.apache.pulsar.io.core.Sink;
import org.apache.pulsar.io.core.SinkContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A test sink: logs every record's value at INFO as {@code fmesh-sink received: <value>}
 * (bytes read as UTF-8), then acknowledges it. Tests read the line from the instance's log.
 */
public class LoggingSink implements Sink<Object> {

    private static final Logger LOG = LoggerFactory.getLogger(LoggingSink.class);

    @Override
    public void open(Map<String, Object> config, SinkContext context) {
        LOG.info("fmesh-sink open: inputs {}", context.getInputTopics());
    }

    @Override
    public void write(Record<Object> record) {
        Object value = record.getValue();
        String text = value instanceof byte[]
                ? new String((byte[]) value, StandardCharsets.UTF_8)
                : String.valueOf(value);
        LOG.info("fmesh-sink received: {}", text);
        record.ack();
    }

    @Override
    public void close() {
    }
}
