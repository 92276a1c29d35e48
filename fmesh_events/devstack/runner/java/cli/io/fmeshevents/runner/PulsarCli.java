package io.fmeshevents.runner;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.pulsar.client.admin.PulsarAdmin;
import org.apache.pulsar.client.admin.PulsarAdminBuilder;
import org.apache.pulsar.client.admin.PulsarAdminException;
import org.apache.pulsar.client.api.Authentication;
import org.apache.pulsar.client.api.AuthenticationFactory;

/**
 * The part of pulsar-admin and pulsarctl that Function Mesh's command lines use to fetch a
 * package: {@code packages download} and {@code functions download}, plus pulsarctl's
 * {@code context set} and {@code oauth2 activate} for OAuth2. On Pulsar's admin client library.
 *
 * <p>Usage: {@code PulsarCli pulsar-admin|pulsarctl <arguments...>}. Failures print one line
 * on stderr and exit 1; a usage error exits 2.
 */
public final class PulsarCli {

    static final String OAUTH2_PLUGIN = "org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2";

    /** A usage error: the command line is not one this tool understands. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    /** A command that failed, its message already one line saying what and why. */
    static final class CommandFailed extends Exception {
        CommandFailed(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The command line split into flags (by name, without dashes) and positional words. */
    static final class Parsed {
        final Map<String, String> flags = new HashMap<>();
        final List<String> words = new ArrayList<>();

        String flag(String name) {
            return flags.get(name);
        }

        boolean bool(String name) throws UsageException {
            String value = flags.get(name);
            if (value == null || value.equalsIgnoreCase("false")) {
                return false;
            }
            if (value.equalsIgnoreCase("true")) {
                return true;
            }
            throw new UsageException("--" + name + " takes true or false, not " + value);
        }

        String required(String name) throws UsageException {
            String value = flags.get(name);
            if (value == null || value.isEmpty()) {
                throw new UsageException("missing --" + name);
            }
            return value;
        }
    }

    // Flags without a value (pulsar-admin style) that also take =true/=false (pulsarctl style).
    static final List<String> BOOLEAN_FLAGS = List.of("tls-allow-insecure", "tls-enable-hostname-verification");
    static final List<String> VALUE_FLAGS = List.of(
            "admin-url", "admin-service-url", "auth-plugin", "auth-params", "tls-trust-cert-path",
            "path", "destination-file", "issuer-endpoint", "audience", "key-file", "scope");

    private PulsarCli() {
    }

    public static void main(String[] args) {
        try {
            if (args.length == 0 || !(args[0].equals("pulsar-admin") || args[0].equals("pulsarctl"))) {
                throw new UsageException("first argument must be pulsar-admin or pulsarctl");
            }
            String tool = args[0];
            Parsed parsed = parse(java.util.Arrays.copyOfRange(args, 1, args.length));
            System.out.println(run(tool, parsed));
            System.exit(0);
        } catch (CommandFailed e) {
            System.err.println(args[0] + ": " + e.getMessage());
            System.exit(1);
        } catch (UsageException e) {
            System.err.println((args.length > 0 ? args[0] : "pulsar-cli") + ": " + e.getMessage());
            System.exit(2);
        } catch (Exception e) {
            System.err.println((args.length > 0 ? args[0] : "pulsar-cli") + ": " + oneLine(e));
            System.exit(1);
        }
    }

    static Parsed parse(String[] args) throws UsageException {
        Parsed parsed = new Parsed();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (!arg.startsWith("--")) {
                parsed.words.add(arg);
                continue;
            }
            String name = arg.substring(2);
            String value = null;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            }
            if (BOOLEAN_FLAGS.contains(name)) {
                parsed.flags.put(name, value == null ? "true" : value);
            } else if (VALUE_FLAGS.contains(name)) {
                if (value == null) {
                    if (i + 1 >= args.length) {
                        throw new UsageException("--" + name + " needs a value");
                    }
                    value = args[++i];
                }
                parsed.flags.put(name, value);
            } else {
                throw new UsageException("unknown flag --" + name);
            }
        }
        return parsed;
    }

    static String run(String tool, Parsed p) throws Exception {
        String command = String.join(" ", p.words.subList(0, Math.min(2, p.words.size())));
        switch (command) {
            case "packages download": {
                String url = single(p, "packages download <function|sink|source://tenant/namespace/name@version>");
                String path = p.required("path");
                try (PulsarAdmin admin = admin(tool, p)) {
                    downloadAtomically(path, part -> admin.packages().download(url, part));
                } catch (PulsarAdminException e) {
                    throw new CommandFailed("packages download " + url + ": " + oneLine(e), e);
                }
                return "Downloaded " + url + " to " + path;
            }
            case "functions download": {
                if (p.words.size() != 2) {
                    throw new UsageException("functions download takes no positional arguments");
                }
                String path = p.required("path");
                String destination = p.required("destination-file");
                try (PulsarAdmin admin = admin(tool, p)) {
                    downloadAtomically(destination, part -> admin.functions().downloadFunction(part, path));
                } catch (PulsarAdminException e) {
                    throw new CommandFailed("functions download " + path + ": " + oneLine(e), e);
                }
                return "Downloaded " + path + " to " + destination;
            }
            case "context set": {
                requireTool(tool, "pulsarctl", command);
                String name = single(p, "context set <name>");
                Context context = new Context(name, p.required("admin-service-url"),
                        p.required("issuer-endpoint"), p.required("audience"), p.required("key-file"),
                        p.flag("scope"));
                Path file = Context.save(context);
                return "Set context " + name + " (" + file + ")";
            }
            case "oauth2 activate": {
                requireTool(tool, "pulsarctl", command);
                Context context = Context.load();
                if (context == null) {
                    throw new IllegalStateException("no OAuth2 context: run `pulsarctl context set` first");
                }
                // Fetch a token now, so a wrong issuer or key fails here and not at the download.
                try (Authentication auth = AuthenticationFactory.create(OAUTH2_PLUGIN, context.oauth2Params())) {
                    auth.start();
                    auth.getAuthData().getCommandData();
                }
                return "Activated OAuth2 client credentials of context " + context.name;
            }
            default:
                throw new UsageException("unsupported command '" + String.join(" ", p.words)
                        + "' (supported: packages download, functions download"
                        + (tool.equals("pulsarctl") ? ", context set, oauth2 activate)" : ")"));
        }
    }

    static PulsarAdmin admin(String tool, Parsed p) throws Exception {
        String urlFlag = tool.equals("pulsarctl") ? "admin-service-url" : "admin-url";
        String url = p.flag(urlFlag);
        String plugin = p.flag("auth-plugin");
        String params = p.flag("auth-params");
        Context context = tool.equals("pulsarctl") && plugin == null ? Context.load() : null;
        if (context != null) {
            // pulsarctl uses the stored context when the command line names no authentication.
            plugin = OAUTH2_PLUGIN;
            params = context.oauth2Params();
            if (url == null || url.isEmpty()) {
                url = context.adminServiceUrl;
            }
        }
        if (url == null || url.isEmpty()) {
            throw new UsageException("missing --" + urlFlag);
        }
        PulsarAdminBuilder builder = PulsarAdmin.builder().serviceHttpUrl(url)
                .allowTlsInsecureConnection(p.bool("tls-allow-insecure"))
                .enableTlsHostnameVerification(p.bool("tls-enable-hostname-verification"));
        String trust = p.flag("tls-trust-cert-path");
        if (trust != null && !trust.isEmpty()) {
            builder.tlsTrustCertsFilePath(trust);
        }
        if (plugin != null && !plugin.isEmpty()) {
            builder.authentication(plugin, params == null ? "" : params);
        }
        return builder.build();
    }

    private static String single(Parsed p, String usage) throws UsageException {
        if (p.words.size() != 3) {
            throw new UsageException("usage: " + usage);
        }
        return p.words.get(2);
    }

    private static void requireTool(String tool, String wanted, String command) throws UsageException {
        if (!tool.equals(wanted)) {
            throw new UsageException(command + " is a " + wanted + " command");
        }
    }

    /** Writes a file through a path beside it, so a failed download leaves no file behind. */
    interface Download {
        void to(String file) throws Exception;
    }

    static void downloadAtomically(String file, Download download) throws Exception {
        Path target = Paths.get(file).toAbsolutePath();
        Files.createDirectories(target.getParent());
        // Not Files.createTempFile: its mode 0600 would outlive the move; the umask decides.
        Path part = target.resolveSibling("." + target.getFileName() + "." + java.util.UUID.randomUUID() + ".part");
        try {
            download.to(part.toString());
            Files.move(part, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(part);
        }
    }

    /** What went wrong, on one line: the server's reason for an HTTP error, else the innermost cause. */
    static String oneLine(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof PulsarAdminException && ((PulsarAdminException) t).getStatusCode() > 0) {
                PulsarAdminException admin = (PulsarAdminException) t;
                String reason = admin.getHttpError() != null ? admin.getHttpError() : admin.getMessage();
                String status = "HTTP " + admin.getStatusCode();
                return (reason != null && reason.startsWith(status) ? reason : status + ": " + reason)
                        .replaceAll("\\s+", " ").trim();
            }
        }
        Throwable cause = e;
        while (cause.getCause() != null && cause.getCause() != cause) {
            cause = cause.getCause();
        }
        String message = cause.getMessage() != null ? cause.getMessage() : cause.getClass().getName();
        if (e != cause && e.getMessage() != null && !e.getMessage().contains(message)) {
            message = e.getMessage() + ": " + message;
        }
        return message.replaceAll("\\s+", " ").trim();
    }

    /** pulsarctl's OAuth2 context, stored between `context set` and the commands after it. */
    static final class Context {
        final String name;
        final String adminServiceUrl;
        final String issuerEndpoint;
        final String audience;
        final String keyFile;
        final String scope;

        Context(String name, String adminServiceUrl, String issuerEndpoint, String audience, String keyFile,
                String scope) {
            this.name = name;
            this.adminServiceUrl = adminServiceUrl;
            this.issuerEndpoint = issuerEndpoint;
            this.audience = audience;
            this.keyFile = keyFile;
            this.scope = scope;
        }

        /** The parameters of Pulsar's OAuth2 client plugin (client credentials flow). */
        String oauth2Params() {
            String key = keyFile.contains("://") || keyFile.startsWith("data:") ? keyFile
                    : new File(keyFile).toURI().toString();
            StringBuilder json = new StringBuilder("{\"type\":\"client_credentials\"");
            json.append(",\"privateKey\":").append(quote(key));
            json.append(",\"issuerUrl\":").append(quote(issuerEndpoint));
            json.append(",\"audience\":").append(quote(audience));
            if (scope != null && !scope.isEmpty()) {
                json.append(",\"scope\":").append(quote(scope));
            }
            return json.append('}').toString();
        }

        /**
         * $PULSARCTL_CONTEXT_FILE, else $HOME/.config/pulsar/fmesh-pulsarctl-context (as pulsarctl
         * keeps its config under $HOME), else under the temp dir.
         */
        static Path file() {
            String explicit = System.getenv("PULSARCTL_CONTEXT_FILE");
            if (explicit != null && !explicit.isEmpty()) {
                return Paths.get(explicit);
            }
            String home = System.getenv("HOME");
            if (home == null || home.isEmpty()) {
                home = System.getProperty("user.home");  // "?" for a uid without a passwd entry
            }
            if (home != null && !home.isEmpty() && !home.equals("?")) {
                Path dir = Paths.get(home, ".config", "pulsar");
                try {
                    Files.createDirectories(dir);
                    if (Files.isWritable(dir)) {
                        return dir.resolve("fmesh-pulsarctl-context");
                    }
                } catch (IOException | SecurityException e) {
                    // a read-only or missing home (pods as uid 10000): use the temp dir
                }
            }
            return Paths.get(System.getProperty("java.io.tmpdir"), "fmesh-pulsarctl-context-" + userName());
        }

        private static String userName() {
            String user = System.getProperty("user.name", "user");
            return user.replaceAll("[^A-Za-z0-9_.-]", "_");
        }

        static Path save(Context c) throws IOException {
            Properties props = new Properties();
            props.setProperty("name", c.name);
            props.setProperty("admin-service-url", c.adminServiceUrl);
            props.setProperty("issuer-endpoint", c.issuerEndpoint);
            props.setProperty("audience", c.audience);
            props.setProperty("key-file", c.keyFile);
            if (c.scope != null) {
                props.setProperty("scope", c.scope);
            }
            Path file = file();
            Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
            try (OutputStream out = Files.newOutputStream(tmp)) {
                props.store(out, "pulsarctl context (fmesh-events runner)");
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            return file;
        }

        static Context load() throws IOException {
            Path file = file();
            if (!Files.exists(file)) {
                return null;
            }
            Properties props = new Properties();
            try (InputStream in = Files.newInputStream(file)) {
                props.load(in);
            }
            return new Context(props.getProperty("name"), props.getProperty("admin-service-url"),
                    props.getProperty("issuer-endpoint"), props.getProperty("audience"),
                    props.getProperty("key-file"), props.getProperty("scope"));
        }

        private static String quote(String value) {
            StringBuilder out = new StringBuilder("\"");
            for (char ch : value.toCharArray()) {
                if (ch == '"' || ch == '\\') {
                    out.append('\\').append(ch);
                } else if (ch < 0x20) {
                    out.append(String.format("\\u%04x", (int) ch));
                } else {
                    out.append(ch);
                }
            }
            return out.append('"').toString();
        }
    }
}
