package io.fmeshevents.testio;

import org.apache.pulsar.functions.api.Context;
import org.apache.pulsar.functions.api.Function;

/**
 * A test function that takes time per message, so a backlog builds and more instances
 * drain it faster: userConfig {@code workMs} (default 50) is spent per message, sleeping
 * or, with {@code busy: true}, burning CPU (for CPU-based autoscaling). Returns the input
 * with the instance id appended ({@code value@<instance>}), so a test sees who did what.
 */
public class WorkFunction implements Function<String, String> {

    @Override
    public String process(String input, Context context) throws Exception {
        long workMs = Long.parseLong(String.valueOf(context.getUserConfigValueOrDefault("workMs", "50")));
        boolean busy = Boolean.parseBoolean(String.valueOf(context.getUserConfigValueOrDefault("busy", "false")));
        if (busy) {
            long until = System.nanoTime() + workMs * 1_000_000L;
            long spin = 0;
            while (System.nanoTime() < until) {
                spin++;
            }
            if (spin < 0) {
                return null; // never: keeps the loop from being optimized away
            }
        } else if (workMs > 0) {
            Thread.sleep(workMs);
        }
        return input + "@" + context.getInstanceId();
    }
}
